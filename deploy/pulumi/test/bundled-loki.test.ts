// The default stack: the bundled single-binary Loki, then the agent, then Grafana provisioning.
import assert from "node:assert/strict";
import * as path from "node:path";
import { test } from "node:test";
import * as yaml from "js-yaml";
import { MANIFESTS, dependencies, inStack, installMocks, keys, registered, startsAfter } from "./mocks";
import { deployLogStack, loadManifests } from "../logstack";

const recorder = installMocks();
const deployed = inStack(recorder, () => deployLogStack({
    namespace: "logging",
    image: "registry.example.com/shipper:1.2.3",
    manifestsDir: MANIFESTS,
}));
const stages = deployed.then(async stack => ({
    stack,
    namespace: await registered(stack.namespace, recorder),
    loki: await registered(stack.loki!, recorder),
    agent: await registered(stack.agent, recorder),
    grafana: await registered(stack.grafana, recorder),
}));

test("each stage holds its manifest's resources", async () => {
    const { namespace, loki, agent, grafana } = await stages;
    assert.deepEqual(keys(namespace), ["Namespace/logging"]);
    assert.deepEqual(keys(loki), [
        "ConfigMap/logging/loki-config", "Service/logging/loki", "Service/logging/loki-headless",
        "StatefulSet/logging/loki"]);
    assert.deepEqual(keys(agent), [
        "ClusterRole/shipper", "ClusterRoleBinding/shipper", "ConfigMap/logging/shipper-config",
        "DaemonSet/logging/shipper", "Service/logging/shipper-metrics",
        "ServiceAccount/logging/shipper"]);
    assert.deepEqual(keys(grafana), [
        "ConfigMap/logging/grafana-dashboard-container-logs",
        "ConfigMap/logging/grafana-dashboard-log-shipper",
        "ConfigMap/logging/grafana-datasource-loki"]);
});

test("Loki is applied before the agent, and the agent before Grafana", async () => {
    const { namespace, loki, agent, grafana } = await stages;
    assert.ok(startsAfter(loki, namespace), "Loki before its namespace exists");
    assert.ok(startsAfter(agent, loki), "the agent before Loki");
    assert.ok(startsAfter(grafana, agent), "Grafana provisioning before the agent");
});

test("each resource depends on every resource of the stage before, so destroy runs backwards",
     async () => {
    const { namespace, loki, agent, grafana } = await stages;
    for (const [stage, before] of [[loki, namespace], [agent, loki], [grafana, agent]]) {
        for (const registration of stage) {
            assert.deepEqual(keys(await dependencies(registration, recorder)), keys(before),
                             registration.key);
        }
    }
});

test("the manifests are applied as written, with the configured image", async () => {
    const { loki, agent } = await stages;
    const lokiConfig = loki.find(r => r.key === "ConfigMap/logging/loki-config")!;
    const written = loadManifests(path.join(MANIFESTS, "loki.yaml"))
        .find(m => m.kind === "ConfigMap")!;
    assert.deepEqual(lokiConfig.inputs.data, written.data);
    const daemonSet = agent.find(r => r.key === "DaemonSet/logging/shipper")!;
    const [container] = daemonSet.inputs.spec.template.spec.containers;
    assert.equal(container.image, "registry.example.com/shipper:1.2.3");
    assert.deepEqual(container.env.map((e: { name: string }) => e.name), ["NODE_NAME"]);
});

test("Grafana gets the Loki datasource and the dashboards, labelled for its sidecar", async () => {
    const { stack, grafana } = await stages;
    const datasource = grafana.find(r => r.key.endsWith("grafana-datasource-loki"))!;
    assert.equal(datasource.inputs.metadata.labels.grafana_datasource, "1");
    const [text] = Object.values<string>(datasource.inputs.data);
    const [source] = (yaml.load(text) as { datasources: Record<string, string>[] }).datasources;
    assert.deepEqual([source.uid, source.access, source.url],
                     ["loki", "proxy", "http://loki.logging.svc.cluster.local:3100"]);
    assert.equal(stack.lokiUrl, source.url);
    for (const dashboard of grafana.filter(r => r.key.includes("grafana-dashboard-"))) {
        assert.equal(dashboard.inputs.metadata.labels.grafana_dashboard, "1");
        const [json] = Object.values<string>(dashboard.inputs.data);
        assert.ok(JSON.parse(json).uid);
    }
});
