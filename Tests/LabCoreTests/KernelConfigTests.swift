import Testing
@testable import LabCore

@Suite struct KernelConfigTests {
    let final = KernelConfig(parsing: """
        CONFIG_CMA=y
        CONFIG_CMA_AREAS=7
        # CONFIG_VIRTIO_CONSOLE is not set
        CONFIG_LOCALVERSION="-lab"
        CONFIG_DEBUG_FS=y
        """)

    @Test func readsValues() {
        #expect(final["CMA"] == "y")
        #expect(final["CONFIG_CMA_AREAS"] == "7")
        #expect(final["VIRTIO_CONSOLE"] == "n")
        #expect(final["LOCALVERSION"] == "-lab")
        #expect(final.isEnabled("CMA") && !final.isEnabled("VIRTIO_CONSOLE") && !final.isEnabled("NUMA"))
    }

    @Test func droppedOptionsAreListedWithFileAndLine() {
        let frag = """
            # comment
            CONFIG_CMA=y
            CONFIG_CMA_DEBUG=y
            CONFIG_CMA_AREAS=9
            # CONFIG_VIRTIO_CONSOLE is not set
            # CONFIG_DEBUG_FS is not set
            """
        let dropped = ConfigFragment.verify(ConfigFragment.requirements(frag, file: "cma.config"), against: final)
        #expect(dropped.map(\.requirement.option) == ["CONFIG_CMA_DEBUG", "CONFIG_CMA_AREAS", "CONFIG_DEBUG_FS"])
        #expect(dropped[0].description == "cma.config:3: CONFIG_CMA_DEBUG=y was dropped: the final .config has CONFIG_CMA_DEBUG is absent (no such symbol in this kernel, or its dependencies are off)")
        #expect(dropped[1].description == "cma.config:4: CONFIG_CMA_AREAS=9 was dropped: the final .config has CONFIG_CMA_AREAS =7")
    }

    @Test func laterFragmentsWin() {
        let reqs = ConfigFragment.requirements("CONFIG_VIRTIO_CONSOLE=y\n", file: "a")
            + ConfigFragment.requirements("# CONFIG_VIRTIO_CONSOLE is not set\n", file: "b")
        #expect(ConfigFragment.verify(reqs, against: final).isEmpty)
    }
}
