import Foundation
import LabCore

/// reproduce.sh in each run directory.
extension ProfileRunner {
    /// reproduce.sh: the exact QEMU argv of this run, with the same kernel and initramfs. The agent
    /// socket gets a fresh temporary folder; the console prints to the terminal.
    func writeReproduce(_ session: BootSession) throws(LabError) {
        let socket = session.plan.agentSocket
        let args = session.plan.arguments().map { arg -> String in
            guard let socket, arg.contains(socket) else { return shellQuote(arg) }
            let escaped = arg.replacingOccurrences(of: socket, with: "@SOCKET@")
                .replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "$", with: "\\$").replacingOccurrences(of: "`", with: "\\`")
            return "\"" + escaped.replacingOccurrences(of: "@SOCKET@", with: "${sockdir}/agent.sock") + "\""
        }
        let script = """
            #!/bin/sh
            # Re-runs the QEMU boot of this run: the same argv, kernel and initramfs.
            # \(session.plan.effectiveCommandLine)
            # The console prints here. The guest's agent waits for cmalab on its socket, so the guest stays up
            # after booting: stop it with Ctrl-C.
            set -e
            sockdir=$(mktemp -d)
            trap 'rm -rf "$sockdir"' EXIT
            \(Self.pairFlags(args).joined(separator: " \\\n    "))

            """
        try session.run.write("reproduce.sh", script)
        chmod(session.run.file("reproduce.sh"), 0o755)
    }

    /// Puts each `-flag value` pair of an argv on one line.
    static func pairFlags(_ args: [String]) -> [String] {
        var lines: [String] = []
        var i = 0
        while i < args.count {
            if args[i].hasPrefix("-"), i + 1 < args.count, !args[i + 1].hasPrefix("-") {
                lines.append(args[i] + " " + args[i + 1]); i += 2
            } else {
                lines.append(args[i]); i += 1
            }
        }
        return lines
    }
}
