// Pulumi mocks that record each resource registration, and when it started and ended.
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import type * as k8s from "@pulumi/kubernetes";

export const MANIFESTS = path.join(__dirname, "..", "..", "k8s");

export interface Registration {
    /** "Kind/namespace/name" or "Kind/name", as the tests compare them. */
    key: string;
    inputs: any;
    /** Positions on one counter shared by all registrations: only their order matters. */
    start: number;
    end: number;
}

export interface Recorder {
    /** By mock id: `${type}::${name}`. */
    registrations: Map<string, Registration>;
    /** The dependsOn option each Kubernetes resource was created with, by mock id. */
    dependsOn: Map<string, pulumi.Input<pulumi.Input<pulumi.Resource>[]> | pulumi.Input<pulumi.Resource> | undefined>;
}

/** Installs the mocks; call before creating resources. */
export function installMocks(): Recorder {
    const registrations = new Map<string, Registration>();
    const dependsOn: Recorder["dependsOn"] = new Map();
    let tick = 0;
    pulumi.runtime.setMocks({
        async newResource(args: pulumi.runtime.MockResourceArgs) {
            const start = tick++;
            // A registration takes a few event-loop turns, as a call to the API server would, so
            // a stage not held back by dependsOn would start before the stage before it ended.
            await new Promise(resolve => setTimeout(resolve, 5));
            const id = `${args.type}::${args.name}`;
            const kind = args.type.split(":").pop();
            registrations.set(id, { key: `${kind}/${args.name}`, inputs: args.inputs, start, end: tick++ });
            return { id, state: args.inputs };
        },
        call(args: pulumi.runtime.MockCallArgs): Record<string, any> {
            throw new Error(`the log stack should need no provider call, got ${args.token}`);
        },
    }, "shipper-log-stack", "test", false);
    return { registrations, dependsOn };
}

/** Runs `program` as a stack's program, recording each Kubernetes resource's dependsOn. */
export function inStack<T>(recorder: Recorder, program: () => T): Promise<T> {
    return new Promise((resolve, reject) => {
        pulumi.runtime.runInPulumiStack(async () => {
            // A stack transformation sees each resource's options as the program gave them.
            pulumi.runtime.registerStackTransformation(args => {
                if (args.type.startsWith("kubernetes:") && !args.type.startsWith("kubernetes:yaml:")) {
                    recorder.dependsOn.set(`${args.type}::${args.name}`, args.opts.dependsOn);
                }
                return undefined;
            });
            resolve(program());
            return {};
        }).catch(reject);
    });
}

export function promiseOf<T>(output: pulumi.Output<T>): Promise<T> {
    return new Promise(resolve => output.apply(value => { resolve(value); return value; }));
}

/** The registrations of one stage's resources, once every one of them is registered. */
export async function registered(group: k8s.yaml.ConfigGroup, recorder: Recorder): Promise<Registration[]> {
    return lookUp(Object.values(await promiseOf(group.resources)), recorder);
}

/** The registrations a resource was made to depend on through dependsOn. */
export async function dependencies(registration: Registration, recorder: Recorder): Promise<Registration[]> {
    const id = [...recorder.registrations].find(([, r]) => r === registration)![0];
    const resources = await promiseOf(pulumi.output(recorder.dependsOn.get(id) ?? []));
    return lookUp([resources].flat() as pulumi.CustomResource[], recorder);
}

async function lookUp(resources: pulumi.CustomResource[], recorder: Recorder): Promise<Registration[]> {
    const ids = await Promise.all(resources.map(resource => promiseOf(resource.id)));
    return ids.map(id => {
        const registration = recorder.registrations.get(id);
        if (registration === undefined) {
            throw new Error(`no registration for ${id}`);
        }
        return registration;
    }).sort((a, b) => a.key.localeCompare(b.key));
}

export function keys(registrations: Registration[]): string[] {
    return registrations.map(r => r.key);
}

/** Whether every registration of `later` started after every one of `earlier` ended. */
export function startsAfter(later: Registration[], earlier: Registration[]): boolean {
    return Math.min(...later.map(r => r.start)) > Math.max(...earlier.map(r => r.end));
}
