import Glibc
import XCTest
@testable import PgmuxIO

final class SystemdNotifierTests: XCTestCase {
    /// NOTIFY_SOCKET is a path or an abstract @name; anything else (unset, relative, a bare @)
    /// means not started by systemd, and nothing is sent.
    func testNotifySocketValues() {
        XCTAssertFalse(SystemdNotifier(environment: nil).isActive)
        XCTAssertFalse(SystemdNotifier(environment: "").isActive)
        XCTAssertFalse(SystemdNotifier(environment: "@").isActive)
        XCTAssertFalse(SystemdNotifier(environment: "run/notify").isActive)
        XCTAssertTrue(SystemdNotifier(environment: "/run/systemd/notify").isActive)
        XCTAssertTrue(SystemdNotifier(environment: "@/org/freedesktop/systemd1/notify/1").isActive)
        XCTAssertFalse(SystemdNotifier(environment: "/" + String(repeating: "x", count: 200)).isActive, "longer than sun_path")
        SystemdNotifier(environment: nil).ready()  // a no-op, not a crash
    }

    /// syslog_facility: PgBouncer's names; anything else is daemon.
    func testSyslogFacilityNames() {
        XCTAssertEqual(Log.syslogFacility("local3"), LOG_LOCAL3)
        XCTAssertEqual(Log.syslogFacility("authpriv"), LOG_AUTHPRIV)
        XCTAssertEqual(Log.syslogFacility("user"), LOG_USER)
        XCTAssertEqual(Log.syslogFacility("LOCAL3"), LOG_DAEMON, "names are case-sensitive, as PgBouncer's strcmp")
        XCTAssertEqual(Log.syslogFacility("bogus"), LOG_DAEMON)
    }
}
