// The log stack as Pulumi resources: the manifests in deploy/k8s, applied Loki -> agent -> Grafana.
//
// The YAML files stay the one description of the stack (kubectl apply -k uses them too); this
// program only retargets them (namespace, image, Loki URL) and orders them with dependsOn.
import * as fs from "fs";
import * as path from "path";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as yaml from "js-yaml";

/** The namespace written in the manifests, replaced by LogStackArgs.namespace. */
const MANIFEST_NAMESPACE = "logging";
const PUSH_PATH = "/loki/api/v1/push";

export interface LogStackArgs {
    /** Namespace for the whole stack. */
    namespace: string;
    /** The shipper image, e.g. "registry.example.com/shipper:0.1.0". */
    image: string;
    /**
     * Base URL of an existing Loki, e.g. a distributed Loki's gateway. When given, the bundled
     * single-binary Loki is not deployed, and both the agent and Grafana use this URL.
     */
    lokiUrl?: string;
    /** The directory holding the manifests (deploy/k8s). */
    manifestsDir: string;
}

export interface LogStack {
    namespace: k8s.yaml.ConfigGroup;
    /** Absent when LogStackArgs.lokiUrl points at a Loki deployed elsewhere. */
    loki?: k8s.yaml.ConfigGroup;
    agent: k8s.yaml.ConfigGroup;
    grafana: k8s.yaml.ConfigGroup;
    /** The Loki base URL the agent pushes to and Grafana queries. */
    lokiUrl: string;
}

type Manifest = Record<string, any>;

export function deployLogStack(args: LogStackArgs): LogStack {
    const lokiUrl = args.lokiUrl ?? `http://loki.${args.namespace}.svc.cluster.local:3100`;
    const load = (file: string): Manifest[] =>
        loadManifests(path.join(args.manifestsDir, file)).map(m => retarget(m, args.namespace));

    const namespace = stage("namespace", load("namespace.yaml"), []);
    const loki = args.lokiUrl === undefined
        ? stage("loki", load("loki.yaml"), [namespace])
        : undefined;
    const agentObjects = load("shipper.yaml").map(m => configureAgent(m, args.image, args.lokiUrl));
    const agent = stage("shipper", agentObjects, [loki ?? namespace]);
    const grafanaObjects = [
        ...load("grafana-datasource.yaml").map(m => pointDatasource(m, lokiUrl)),
        ...dashboards(args.manifestsDir, args.namespace),
    ];
    const grafana = stage("grafana", grafanaObjects, [agent]);
    return { namespace, loki, agent, grafana, lokiUrl };
}

/**
 * One step of the documented order. Every resource of the step depends on every resource of the
 * step before, stated on each resource rather than only on the step's component, so the order
 * does not rest on how a component's dependsOn reaches children that ConfigGroup creates
 * asynchronously. The engine records each edge: `pulumi up` creates Loki, then the agent, then
 * Grafana's provisioning, and `pulumi destroy` removes them the other way round.
 */
function stage(name: string, objs: Manifest[], after: k8s.yaml.ConfigGroup[]): k8s.yaml.ConfigGroup {
    const previous = pulumi.all(after.map(group => group.resources))
        .apply(maps => maps.flatMap(resources => Object.values(resources)));
    return new k8s.yaml.ConfigGroup(name, {
        objs,
        transformations: [(_obj, opts) => { opts.dependsOn = previous; }],
    }, { dependsOn: after });
}

export function loadManifests(file: string): Manifest[] {
    return yaml.loadAll(fs.readFileSync(file, "utf8"))
        .filter((doc): doc is Manifest => typeof doc === "object" && doc !== null);
}

/** Moves an object from the manifests' namespace to `namespace`. */
export function retarget(manifest: Manifest, namespace: string): Manifest {
    const m = structuredClone(manifest);
    if (m.kind === "Namespace") {
        m.metadata.name = namespace;
    } else if (m.metadata.namespace !== undefined) {
        m.metadata.namespace = namespace;
    }
    for (const subject of m.subjects ?? []) {
        if (subject.namespace === MANIFEST_NAMESPACE) {
            subject.namespace = namespace;
        }
    }
    return m;
}

/** Sets the DaemonSet's image and, for an external Loki, the agent's push URL override. */
export function configureAgent(manifest: Manifest, image: string, lokiUrl?: string): Manifest {
    if (manifest.kind !== "DaemonSet") {
        return manifest;
    }
    const m = structuredClone(manifest);
    for (const container of m.spec.template.spec.containers) {
        container.image = image;
        if (lokiUrl !== undefined) {
            // SHIPPER_LOKI_URL overrides loki.url of the ConfigMap (shipper/config.py).
            container.env = [...(container.env ?? []),
                { name: "SHIPPER_LOKI_URL", value: lokiUrl.replace(/\/+$/, "") + PUSH_PATH }];
        }
    }
    return m;
}

/** Points the provisioned Grafana datasource at `lokiUrl`. */
export function pointDatasource(manifest: Manifest, lokiUrl: string): Manifest {
    if (manifest.kind !== "ConfigMap" || manifest.metadata.labels?.grafana_datasource !== "1") {
        return manifest;
    }
    const m = structuredClone(manifest);
    for (const [file, text] of Object.entries<string>(m.data)) {
        const provisioning = yaml.load(text) as { datasources: { type: string; url: string }[] };
        for (const source of provisioning.datasources.filter(s => s.type === "loki")) {
            source.url = lokiUrl;
        }
        m.data[file] = yaml.dump(provisioning);
    }
    return m;
}

/** The dashboard ConfigMaps that kustomization.yaml's configMapGenerator makes for kubectl. */
export function dashboards(manifestsDir: string, namespace: string): Manifest[] {
    const kustomization = yaml.load(
        fs.readFileSync(path.join(manifestsDir, "kustomization.yaml"), "utf8")) as Manifest;
    return kustomization.configMapGenerator.map((generator: Manifest) => ({
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: generator.name, namespace, labels: generator.options.labels },
        data: Object.fromEntries(generator.files.map((file: string) => [
            path.basename(file), fs.readFileSync(path.join(manifestsDir, file), "utf8")])),
    }));
}
