import XCTest
@testable import PgmuxCore

final class AdminAccessTests: XCTestCase {
    func testLoginRoles() {
        func role(_ u: String, uid: Bool = false, any: Bool = false) -> AdminRole? {
            AdminAccess.role(user: u, adminUsers: ["root", "ops"], statsUsers: ["mon"], sameUIDUnixSocket: uid, authTypeAny: any)
        }
        XCTAssertEqual(role("root"), .admin)
        XCTAssertEqual(role("mon"), .stats)
        XCTAssertNil(role("alice"))
        XCTAssertNil(role("Root"))
        XCTAssertNil(role("pgbouncer"))
        XCTAssertEqual(role("pgbouncer", uid: true), .admin)
        XCTAssertNil(role("alice", uid: true))
        XCTAssertEqual(role("alice", any: true), .stats)
        XCTAssertEqual(role("ops", any: true), .admin)
    }

    func testAdminMayRunEverything() {
        for c: AdminCommand in [.show(.fds), .reload, .suspend, .pause(nil), .pause("db"), .kill(nil), .killClient(3),
                                .set(key: "a", value: "b"), .shutdown(.immediate), .resume(nil), .disable("d"),
                                .enable("d"), .reconnect(nil), .waitClose("d"), .fakeSet(.timeZone)] {
            XCTAssertNil(AdminAccess.check(c, role: .admin), "\(c)")
        }
    }

    func testStatsUsersOnlyShowAndFakeSet() {
        for item in AdminShowItem.allCases where item != .fds {
            XCTAssertNil(AdminAccess.check(.show(item), role: .stats), "\(item)")
        }
        XCTAssertNil(AdminAccess.check(.fakeShow(.clientEncoding), role: .stats))
        XCTAssertNil(AdminAccess.check(.fakeSet(.dateStyle), role: .stats))
        let needed = AdminError("admin access needed")
        XCTAssertEqual(AdminAccess.check(.show(.fds), role: .stats), needed)
        for c: AdminCommand in [.reload, .suspend, .pause(nil), .pause("db"), .resume("db"), .kill(nil), .killClient(3),
                                .killClient(nil), .set(key: "a", value: "b"), .shutdown(.waitForClients),
                                .disable(nil), .enable("d"), .reconnect(nil), .waitClose(nil)] {
            XCTAssertEqual(AdminAccess.check(c, role: .stats), needed, "\(c)")
        }
    }

    func testArgumentErrorsComeAfterAccess() {
        XCTAssertEqual(AdminAccess.check(.disable(nil), role: .admin)?.message, "a database is required")
        XCTAssertEqual(AdminAccess.check(.enable(nil), role: .admin)?.message, "a database is required")
        XCTAssertEqual(AdminAccess.check(.killClient(nil), role: .admin)?.message, "invalid client pointer supplied")
    }

    func testErrorTexts() {
        XCTAssertEqual(AdminError.noSuchDatabase("x").message, "no such database: x")
        XCTAssertEqual(AdminError.cannotDisableAdmin("pgbouncer").message, "cannot disable admin db: pgbouncer")
        XCTAssertEqual(AdminError.databaseNotPaused("x").message, "database x is not paused")
        XCTAssertEqual(AdminError.reloadFailed.sqlstate, "F0000")
        XCTAssertEqual(AdminError.unsupportedPacket(UInt8(ascii: "D")).message, "unsupported packet type for admin console: 68")
    }
}
