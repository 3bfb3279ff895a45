import Foundation
import Testing
@testable import LabRuntime

/// How the orphan reaper tells a live owner from a reused pid: field 22 of /proc/PID/stat.
@Suite struct OrphanReaperStatTests {
    /// A stat line with `comm` as field 2, field N holding N for 3 < N < 22, and `start` as field 22.
    static func statLine(pid: Int = 4242, comm: String, start: UInt64) -> String {
        "\(pid) (\(comm)) S " + (4...21).map(String.init).joined(separator: " ") + " \(start) 23 24 25\n"
    }

    @Test func field22IsTheStartTime() {
        #expect(OrphanReaper.startTime(statLine: Self.statLine(comm: "cmalab", start: 987_654)) == 987_654)
    }

    @Test func aCommandNameWithSpacesAndParenthesesDoesNotShiftTheFields() {
        for comm in ["my prog", "a) b", "x) S 1 2 3 (y", ")", "((", "a b c d e f g h i j k l m n o p q r s t u v"] {
            #expect(OrphanReaper.startTime(statLine: Self.statLine(comm: comm, start: 31_337)) == 31_337, "comm \(comm)")
        }
    }

    @Test func linesThatAreNotStatLinesGiveNothing() {
        #expect(OrphanReaper.startTime(statLine: "") == nil)
        #expect(OrphanReaper.startTime(statLine: "4242 cmalab S 1 2 3") == nil)
        #expect(OrphanReaper.startTime(statLine: "4242 (cmalab) S 1 2 3\n") == nil)
        #expect(OrphanReaper.startTime(statLine: Self.statLine(comm: "c", start: 0).replacingOccurrences(of: " 0 23", with: " x 23")) == nil)
    }

    @Test func thisProcessIsAliveOnlyWithItsOwnStartTime() throws {
        let me = getpid()
        let start = try #require(OrphanReaper.startTime(of: me))
        #expect(OrphanReaper.isOwnerAlive(me, startTime: start))
        #expect(!OrphanReaper.isOwnerAlive(me, startTime: start + 1))
        // An old run directory without owner.start: a live pid is enough.
        #expect(OrphanReaper.isOwnerAlive(me, startTime: nil))
        let gone = try ChildProcess(["true"], stdout: .null, stderr: .null)
        _ = gone.wait()
        #expect(!OrphanReaper.isOwnerAlive(gone.pid, startTime: nil))
        #expect(OrphanReaper.startTime(of: gone.pid) == nil)
    }
}
