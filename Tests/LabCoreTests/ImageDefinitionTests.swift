import Testing
@testable import LabCore

@Suite struct ImageDefinitionTests {
    @Test func buildRecipeResolvesFragmentsNextToTheFile() throws {
        let def = try ImageDefinition.parse("""
            name: cma-6.12
            description: test
            build:
              debian-source: linux-source-6.12
              base: tinyconfig
              fragments: [fragments/base.config, ../shared/cma.config]
            cmdline: dyndbg="file mm/cma.c +p"
            """, file: "/repo/Images/cma-6.12.yaml")
        #expect(def.source == .debianSource(package: "linux-source-6.12"))
        #expect(def.fragments == ["/repo/Images/fragments/base.config", "/repo/shared/cma.config"])
        #expect(def.commandLine.value(of: "dyndbg") == "file mm/cma.c +p")
        #expect(def.isBuilt)
    }

    @Test func prebuiltForms() throws {
        let pkg = try ImageDefinition.parse("name: n\nprebuilt:\n  debian-package: linux-image-6.12.*-amd64-unsigned\n", file: "/i/n.yaml")
        #expect(pkg.source == .debianPackage(pattern: "linux-image-6.12.*-amd64-unsigned"))
        let own = try ImageDefinition.parse("name: n\nprebuilt:\n  kernel: k/bzImage\n  config: /abs/.config\n", file: "/i/n.yaml")
        #expect(own.source == .prebuilt(kernel: "/i/k/bzImage", config: "/abs/.config"))
        #expect(!own.isBuilt)
    }

    @Test(arguments: [
        ("name: x\nbuild:\n  debian-source: a\n  fragmnts: []\n", "/i/x.yaml:4:3: at `build`: unknown key `fragmnts` (did you mean `fragments`?); allowed keys: debian-source, tree, base, fragments"),
        ("name: x\n", "/i/x.yaml:1:1: needs one of: build, prebuilt"),
        ("name: x\nbuild: {debian-source: a}\nprebuilt: {kernel: k, config: c}\n", "/i/x.yaml:1:1: give only one of build, prebuilt"),
        ("name: x y\nbuild: {debian-source: a}\n", "/i/x.yaml:1:7: at `name`: image names use letters, digits, `.`, `_` and `-` only, found `x y`"),
        ("name: x\nbuild: {debian-source: a, base: menuconfig}\n", "/i/x.yaml:2:33: at `build.base`: `menuconfig` is not a base config cmalab knows; use one of: tinyconfig, allnoconfig, defconfig, x86_64_defconfig, kvm_guest.config"),
        ("name: x\nprebuilt: {kernel: k}\n", "/i/x.yaml:2:11: at `prebuilt`: missing required key `config`: the .config the bzImage was built with; cmalab reads it before booting"),
        ("name: [x\n", "/i/x.yaml:2:1: YAML syntax: while parsing a flow sequence did not find expected ',' or ']'"),
        ("", "/i/x.yaml:1: the file is empty"),
    ])
    func badFilesSayWhereAndWhat(yaml: String, message: String) {
        #expect(throws: InputError.self) { try ImageDefinition.parse(yaml, file: "/i/x.yaml") }
        do { _ = try ImageDefinition.parse(yaml, file: "/i/x.yaml") } catch {
            #expect(error.description == message)
        }
    }

    @Test func repoImagesParse() throws {
        // The bundled definitions must stay valid.
        let dir = String(#filePath.dropLast("Tests/LabCoreTests/ImageDefinitionTests.swift".count)) + "Images"
        for name in ["cma-6.12", "cma-6.1", "cma-6.12-uart", "nocma-6.12"] {
            let path = "\(dir)/\(name).yaml"
            let text = try String(contentsOfFile: path, encoding: .utf8)
            let def = try ImageDefinition.parse(text, file: path)
            #expect(def.name == name)
        }
    }
}
