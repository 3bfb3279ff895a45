// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "cmalab",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "cmalab", targets: ["cmalab"]),
        .executable(name: "cmalab-agent", targets: ["cmalab-agent"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // Wire format shared by host and guest: frames and typed messages. stdlib only. LabProtocol, AgentCore
        // and cmalab-agent are also compiled with Embedded Swift for the guest (Scripts/build-agent, `make
        // agent`): no Foundation, no key paths, no reflection-based printing there.
        .target(name: "LabProtocol"),
        // Pure lab logic: parsers, planners, profile model, evaluation, reports. No I/O.
        .target(name: "LabCore", dependencies: ["LabProtocol", .product(name: "Yams", package: "Yams")]),
        // Effects: processes, QEMU sessions, kernel builds, initramfs, caches, agent client.
        // libvirt's C API (pkg-config `libvirt`, Debian's libvirt-dev), for the libvirt backend.
        .systemLibrary(name: "CLibvirt", pkgConfig: "libvirt", providers: [.apt(["libvirt-dev"])]),
        .target(name: "LabRuntime", dependencies: ["LabCore", "LabProtocol", "CLibvirt"]),
        // The command-line tool: one file per subcommand.
        .executableTarget(name: "cmalab", dependencies: [
            "LabRuntime", "LabCore",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // What the guest agent does, testable on the host over a socketpair.
        .target(name: "AgentCore", dependencies: ["LabProtocol"]),
        // PID 1 in the guest; linked with -static-executable by the Makefile.
        .executableTarget(name: "cmalab-agent", dependencies: ["AgentCore"]),
        // libFuzzer target for the parsers, results files and the agent client's inbox (`make fuzz`); a plain build
        // replays inputs from files.
        .executableTarget(name: "cmalab-fuzz", dependencies: ["LabCore", "LabProtocol", "LabRuntime"]),

        // A stand-in for qemu-system-x86_64 (`CMALAB_QEMU`) that speaks the real frame protocol on the agent
        // socket and misbehaves as its environment says; the hostile-guest tests run the cmalab binary with it.
        // Not part of any product.
        .executableTarget(name: "cmalab-standin-qemu", dependencies: ["AgentCore", "LabProtocol"], path: "Tests/StandinQEMU"),
        // What several test targets share (a seeded PRNG); not part of any product.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        // A fake machine (the real agent core in-process over a socketpair, a scripted console and a small CMA
        // model) and a throwaway lab around it, so ProfileRunner, AgentClient and MatrixRunner get fast tests.
        .target(name: "LabTestKit", dependencies: ["LabRuntime", "LabCore", "LabProtocol", "AgentCore"], path: "Tests/LabTestKit"),
        .testTarget(name: "LabProtocolTests", dependencies: ["LabProtocol", "TestSupport"]),
        .testTarget(name: "LabCoreTests", dependencies: ["LabCore", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "AgentCoreTests", dependencies: ["AgentCore", "LabProtocol"]),
        .testTarget(name: "LabRuntimeTests", dependencies: ["LabRuntime", "LabCore", "LabProtocol", "LabTestKit"]),
        // Boots real kernels in real QEMU; needs the images built by `make images`.
        .testTarget(name: "IntegrationTests", dependencies: ["LabRuntime", "LabCore", "LabProtocol"]),
    ],
    swiftLanguageModes: [.v6]
)
