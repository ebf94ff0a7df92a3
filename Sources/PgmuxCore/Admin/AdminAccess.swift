/// Rights of a console user (`client->admin_user` in PgBouncer).
public enum AdminRole: Equatable, Sendable {
    /// In `admin_users`, or `pgbouncer` over the Unix socket from the pooler's own uid: everything.
    case admin
    /// In `stats_users` (or any non-admin name under `auth_type = any`): SHOW (not FDS), fake SETs.
    case stats
}

/// Who may log in to and run what on the admin console (PgBouncer 1.25.2 `admin.c`).
public enum AdminAccess {
    /// The role of a user who has passed normal authentication (or needs none) to db `pgbouncer`;
    /// nil → disconnect with FATAL `not allowed`. Name comparison is exact (PgBouncer's
    /// `strlist_contains`).
    /// - Parameters:
    ///   - sameUIDUnixSocket: the connection is on the Unix socket and its peer uid is ours.
    ///   - authTypeAny: `auth_type = any`.
    public static func role(user: String, adminUsers: [String], statsUsers: [String],
                            sameUIDUnixSocket: Bool, authTypeAny: Bool) -> AdminRole? {
        if sameUIDUnixSocket && user == "pgbouncer" { return .admin }
        if adminUsers.contains(user) { return .admin }
        if authTypeAny || statsUsers.contains(user) { return .stats }
        return nil
    }

    /// The error to send before executing `command` for `role`, or nil to go ahead. Covers the
    /// access rule and the argument errors PgBouncer reports right after it (`a database is
    /// required`, `invalid client pointer supplied`); state-dependent errors are the caller's.
    public static func check(_ command: AdminCommand, role: AdminRole) -> AdminError? {
        switch command {
        case .show(.fds):
            return role == .admin ? nil : .accessNeeded
        case .show, .fakeShow, .fakeSet:
            return nil
        default:
            break
        }
        guard role == .admin else { return .accessNeeded }
        switch command {
        case .disable(nil), .enable(nil): return .databaseRequired
        case .killClient(nil): return .invalidClientPointer
        default: return nil
        }
    }
}
