// cmalab-agent: PID 1 of the guest initramfs (see AgentMain). This is the SwiftPM entry point; the
// Embedded Swift build that `make agent` does (Scripts/build-agent) enters through Scripts/agent/runtime.c.
import AgentCore

AgentMain.run(arguments: CommandLine.arguments)
