import Foundation
import Testing
@testable import LabRuntime

@Suite struct LabErrorTests {
    struct Cause: Error, Equatable { var detail: String }

    @Test func theCauseIsKeptAsTheErrorItWas() {
        let e = LabError(.io, "cannot read x", underlying: Cause(detail: "disk on fire"))
        #expect(e.underlying as? Cause == Cause(detail: "disk on fire"))
        // The description still shows it in parentheses, after the message.
        #expect(e.description == "cannot read x (Cause(detail: \"disk on fire\"))")
    }

    @Test func aCauseTheMessageAlreadyQuotesIsNotRepeated() {
        let inner = LabError(.io, "no space left")
        let e = LabError(.build, "build failed: no space left", hint: "free some disk", underlying: inner)
        #expect((e.underlying as? LabError)?.code == .io)
        #expect(e.description == "build failed: no space left\n  hint: free some disk")
    }

    @Test func noCauseNoParentheses() {
        #expect(LabError(.input, "bad").description == "bad")
        #expect(LabError(.input, "bad").underlying == nil)
    }
}
