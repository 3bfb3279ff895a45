import Foundation
import LabCore
import LabProtocol

/// Reading the guest's kernel log (/dev/kmsg) through the agent, a batch at a time.
extension ProfileRunner {
    /// The records as `dmesg` prints them, one `[seconds] message` line each: the text of dmesg.txt.
    static func dmesgText(_ records: [KmsgRecord]) -> String {
        records.map { r in String(format: "[%12.6f] ", Double(r.timestampMicroseconds) / 1_000_000) + r.message }
            .joined(separator: "\n") + "\n"
    }

    /// /dev/kmsg records after `after` (all since boot when nil), at most 64 batches of 5000.
    func dmesgRecords(_ agent: AgentClient, after start: UInt64? = nil) throws(LabError) -> [KmsgRecord] {
        var records: [KmsgRecord] = []
        var after = start
        for _ in 0..<64 {
            guard case .kmsg(let batch) = try agent.request(.kmsg(afterSequence: after, maxRecords: 5000)) else {
                throw LabError(.agent, "unexpected answer to kmsg")
            }
            records += batch.records
            guard let last = batch.records.last else { break }
            after = last.sequence
        }
        return records
    }
}
