// A stack that uses an existing Loki (e.g. a distributed Loki's gateway) in another namespace.
import assert from "node:assert/strict";
import { test } from "node:test";
import * as yaml from "js-yaml";
import { MANIFESTS, inStack, installMocks, keys, registered, startsAfter } from "./mocks";
import { deployLogStack } from "../logstack";

const GATEWAY = "http://loki-gateway.loki.svc.cluster.local/";
const recorder = installMocks();
const deployed = inStack(recorder, () => deployLogStack({
    namespace: "observability",
    image: "shipper:0.1.0",
    lokiUrl: GATEWAY,
    manifestsDir: MANIFESTS,
}));
const stages = deployed.then(async stack => ({
    stack,
    namespace: await registered(stack.namespace, recorder),
    agent: await registered(stack.agent, recorder),
    grafana: await registered(stack.grafana, recorder),
}));

test("no Loki is deployed, and the agent follows its namespace", async () => {
    const { stack, namespace, agent, grafana } = await stages;
    assert.equal(stack.loki, undefined);
    const all = [...recorder.registrations.values()].map(r => r.key);
    assert.ok(!all.some(key => key.includes("loki-config") || key.startsWith("StatefulSet/")), `${all}`);
    assert.ok(startsAfter(agent, namespace));
    assert.ok(startsAfter(grafana, agent));
});

test("every object moves to the configured namespace", async () => {
    const { namespace, agent, grafana } = await stages;
    assert.deepEqual(keys(namespace), ["Namespace/observability"]);
    for (const r of [...agent, ...grafana]) {
        if (!r.key.startsWith("Cluster")) {
            assert.equal(r.inputs.metadata.namespace, "observability", r.key);
        }
    }
    const binding = agent.find(r => r.key === "ClusterRoleBinding/shipper")!;
    assert.equal(binding.inputs.subjects[0].namespace, "observability");
});

test("the agent pushes to the external Loki and Grafana queries it", async () => {
    const { agent, grafana } = await stages;
    const daemonSet = agent.find(r => r.key.startsWith("DaemonSet/"))!;
    const [container] = daemonSet.inputs.spec.template.spec.containers;
    const env = Object.fromEntries(container.env.map((e: { name: string; value?: string }) => [e.name, e.value]));
    assert.equal(env.SHIPPER_LOKI_URL, "http://loki-gateway.loki.svc.cluster.local/loki/api/v1/push");
    const datasource = grafana.find(r => r.key.endsWith("grafana-datasource-loki"))!;
    const [text] = Object.values<string>(datasource.inputs.data);
    assert.equal((yaml.load(text) as { datasources: { url: string }[] }).datasources[0].url, GATEWAY);
});
