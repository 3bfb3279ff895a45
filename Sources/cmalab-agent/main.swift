// cmalab-agent: PID 1 of the guest initramfs. Sets up the system, finds the host
// channel, announces itself and serves requests until told to power off.
import AgentCore
import Glibc

/// Guest uptime (CLOCK_MONOTONIC) at start, for the ready line: it shows what start-up costs.
let startedAt = AgentTools.monotonicNanoseconds()

// Helper modes (`/sbin/cmalab-agent hold-memory ...`), run by the host through exec.
if CommandLine.arguments.count >= 2, AgentTools.names.contains(CommandLine.arguments[1]) {
    exit(AgentTools.run(CommandLine.arguments))
}

if getpid() == 1 {
    for problem in AgentBoot.setUpPID1() {
        AgentBoot.console("cmalab-agent: warning: \(problem)")
    }
}

let paths = AgentPaths()
guard let channel = AgentChannel.find(paths: paths) else {
    AgentBoot.fatal("no host channel: no virtio agent port and no usable /dev/ttyS1")
}
let handler = AgentHandler(paths: paths)
let server = AgentServer(
    handler: handler, hello: handler.hello(channel: channel.description),
    onPowerAction: { action in AgentBoot.perform(action) })

let readyAt = AgentTools.monotonicNanoseconds()
AgentBoot.console("cmalab-agent: ready on \(channel.description) at \(AgentBoot.seconds(readyAt)) s (started at \(AgentBoot.seconds(startedAt)) s)")
do {
    try server.serve(fd: channel.fd)
} catch {
    AgentBoot.fatal("\(error)")
}
// A power action never returns here (perform exits), so the host hung up.
AgentBoot.fatal("host closed the channel")
