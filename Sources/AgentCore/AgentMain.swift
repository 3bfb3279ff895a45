import Glibc
import LabProtocol

/// What the agent binary does, from its arguments: a helper mode (`/sbin/cmalab-agent hold-memory ...`,
/// run by the host through exec), or PID 1 of the guest: set up the system, find the host channel,
/// announce itself and serve requests until told to power off.
public enum AgentMain {
    public static func run(arguments: [String]) -> Never {
        // Guest uptime (CLOCK_MONOTONIC) at start, for the ready line: it shows what start-up costs.
        let startedAt = AgentTools.monotonicNanoseconds()

        if arguments.count >= 2, AgentTools.names.contains(arguments[1]) {
            exit(AgentTools.run(arguments))
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
    }
}

#if hasFeature(Embedded)
/// The Embedded Swift build's entry point: it has no CommandLine, so C's main (Scripts/agent/runtime.c)
/// passes argv here.
@_cdecl("cmalab_agent_main")
public func cmalabAgentMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    AgentMain.run(arguments: (0..<Int(argc)).map { String(cString: argv[$0]!) })
}
#endif
