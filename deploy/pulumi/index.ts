// Pulumi program: adds the log infrastructure (Loki, the shipper DaemonSet, Grafana provisioning)
// to the cluster of the current kubeconfig context, in the architecture's order.
//
//   pulumi config set namespace logging                    # default: logging
//   pulumi config set image registry.example.com/shipper:0.1.0
//   pulumi config set lokiUrl http://loki-gateway.loki.svc  # optional: use an existing Loki
//   pulumi up
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { deployLogStack } from "./logstack";

const config = new pulumi.Config();
export const namespace = config.get("namespace") ?? "logging";
const stack = deployLogStack({
    namespace,
    image: config.get("image") ?? "shipper:0.1.0",
    lokiUrl: config.get("lokiUrl") || undefined, // unset or empty: deploy the bundled Loki
    manifestsDir: path.join(__dirname, "..", "k8s"),
});

/** Where the agent pushes (plus /loki/api/v1/push) and Grafana queries. */
export const lokiUrl = stack.lokiUrl;
