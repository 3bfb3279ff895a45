import Foundation
import Testing
@testable import LabCore

/// The trace parser (CMATrace.swift) on lines in the kernel's formats (include/trace/events/cma.h and
/// migrate.h, as 6.12's and 6.1's tracefs `trace` prints them).
@Suite struct CMATraceTests {
    // A 6.12 trace of one successful allocation with a busy retry and migration, then a release.
    let trace612 = """
        # tracer: nop
        #
        # entries-in-buffer/entries-written: 6/6   #P:1
        #
        #                                _-----=> irqs-off/BH-disabled
        #           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
        #              | |         |   |||||     |         |
                  sh-123     [000] .....    23.180000: cma_alloc_start: name=reserved count=262144 align=8
                  sh-123     [000] .....    23.190000: mm_migrate_pages: nr_succeeded=512 nr_failed=0 nr_thp_succeeded=0 nr_thp_failed=0 nr_thp_split=0 nr_split=0 mode=MIGRATE_SYNC reason=contig_range
                  sh-123     [000] .....    23.200000: cma_alloc_busy_retry: name=reserved pfn=0x3fc00 page=00000000a1b2c3d4 count=262144 align=8
                  sh-123     [000] .....    23.243744: cma_alloc_finish: name=reserved pfn=0x3fc00 page=00000000a1b2c3d4 count=262144 align=8 errorno=0
                  sh-123     [000] .....    24.000000: cma_alloc_start: name=reserved count=1 align=0
                  sh-123     [000] .....    24.000100: cma_alloc_finish: name=reserved pfn=0x0 page=0000000000000000 count=1 align=0 errorno=-12
                  sh-123     [000] .....    25.000000: cma_release: name=reserved pfn=0x3fc00 page=00000000a1b2c3d4 count=262144
        """

    @Test func summaryOf612Trace() {
        let s = CMATrace.summary(trace612)
        #expect(s.allocationMicroseconds == [63744, 100])
        #expect(s.failedAllocations == 1)
        #expect(s.busyRetries == 1)
        #expect(s.pagesMigrated == 512 && s.migrationFailures == 0)
        #expect(s.releases == 1)
        #expect(s.unreadableLines == 0)
        #expect(s.line == "2 allocations, 100/31922/63744 µs (min/median/max), 1 failed, 1 busy retry, 512 pages migrated, 1 release")
    }

    @Test func the61FinishHasNoErrnoAFailureHasNoPage() {
        let s = CMATrace.summary("""
                 sh-9  [000] ....   5.000001: cma_alloc_start: name=reserved count=8 align=0
                 sh-9  [000] ....   5.000011: cma_alloc_finish: name=reserved pfn=0xffffffff page=0000000000000000 count=8 align=0
            """)
        #expect(s.allocationMicroseconds == [10] && s.failedAllocations == 1)
    }

    @Test func garbageIsCountedNeverTrusted() {
        let s = CMATrace.summary("""
            sh-1 [000] .... 99999999999999999999.000000: cma_alloc_start: name=x count=1 align=0
            sh-1 [000] .... 1.0000000000001: cma_alloc_start: name=x count=1 align=0
            sh-1 [000] .... 2.000000: cma_alloc_finish: name=x
            sh-1 [000] .... 3.000000: mm_migrate_pages: nr_succeeded=18446744073709551615 nr_failed=x
            sh-1 [000] .... 3.000001: mm_migrate_pages: nr_succeeded=18446744073709551615
            sh-1 [000] .... 4.000000: sched_switch: prev=a
            """)
        #expect(s.unreadableLines == 2)
        #expect(s.allocationMicroseconds.isEmpty)
        #expect(s.pagesMigrated == .max)
        #expect(CMATrace.summary("").line == "no CMA events")
    }
}
