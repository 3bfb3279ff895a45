import Foundation
import LabCore

/// reproduce.sh in each run directory.
extension ProfileRunner {
    /// reproduce.sh: the exact QEMU argv of this run, with the same kernel and initramfs. The agent
    /// socket gets a fresh temporary folder; the console prints to the terminal.
    func writeReproduce(_ session: BootSession) throws(LabError) {
        let script = Self.reproduceScript(arguments: session.plan.arguments(), socket: session.plan.agentSocket)
        try session.run.write("reproduce.sh", script)
        chmod(session.run.file("reproduce.sh"), 0o755)
    }

    /// The text of reproduce.sh for a QEMU argv (`arguments[0]` is the binary) whose agent socket is `socket`.
    static func reproduceScript(arguments: [String], socket: String?) -> String {
        let lines = Self.pairFlags(arguments).map { $0.map { quoted($0, socket: socket) }.joined(separator: " ") }
        let script = """
            #!/bin/sh
            # Re-runs the QEMU boot of this run: the same argv, kernel and initramfs.
            # The kernel command line is the -append argument below.
            # The console prints here. The guest's agent waits for cmalab on its socket, so the guest stays up
            # after booting: stop it with Ctrl-C.
            set -e
            sockdir=$(mktemp -d)
            trap 'rm -rf "$sockdir"' EXIT
            \(lines.joined(separator: " \\\n    "))

            """
        return script
    }

    /// `arg` through `singleQuoted`; each occurrence of the agent socket path becomes the temporary folder's
    /// socket, `"${sockdir}/agent.sock"`, between the quoted parts.
    static func quoted(_ arg: String, socket: String?) -> String {
        guard let socket, !socket.isEmpty, arg.contains(socket) else { return singleQuoted(arg) }
        return arg.components(separatedBy: socket).map(singleQuoted).joined(separator: "\"${sockdir}/agent.sock\"")
    }

    /// Puts each `-flag value` pair of an argv on one line.
    static func pairFlags(_ args: [String]) -> [[String]] {
        var lines: [[String]] = []
        var i = 0
        while i < args.count {
            if args[i].hasPrefix("-"), i + 1 < args.count, !args[i + 1].hasPrefix("-") {
                lines.append([args[i], args[i + 1]]); i += 2
            } else {
                lines.append([args[i]]); i += 1
            }
        }
        return lines
    }
}
