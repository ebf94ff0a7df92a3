import Glibc
import CGSSAPI

/// The server side of one client's GSSAPI (Kerberos) login, as PostgreSQL's pg_GSS_recvauth:
/// each token from the client goes through gss_accept_sec_context with the keys of
/// `krb_server_keyfile`, until the security context is complete and names the client.
///
/// Accepting reads the keytab and the replay cache from disk, so each step runs as a job on a
/// BlockingAuthWorker thread; a login's steps follow one another (the client waits for each
/// answer), so the context is never used by two threads at once, and the worker's mutex orders
/// the job's writes before the loop reads `output`, `complete` and `principal`.
final class GSSAcceptor: @unchecked Sendable {
    private let keytab: String
    private var context: gss_ctx_id_t?
    /// After a step: the token for the client (nil: the step failed).
    private(set) var output: [UInt8]?
    private(set) var complete = false
    /// Once complete: the client's principal, `name@REALM`.
    private(set) var principal: String?

    init(keytab: String) { self.keytab = keytab }

    deinit {
        if context != nil {
            var minor: OM_uint32 = 0
            gss_delete_sec_context(&minor, &context, nil)
        }
    }

    /// One gss_accept_sec_context round (worker thread).
    func step(_ token: [UInt8]) -> BlockingAuthWorker.Verdict {
        output = nil
        if !keytab.isEmpty { _ = krb5_gss_register_acceptor_identity(keytab) }
        var minor: OM_uint32 = 0
        var name: gss_name_t?
        var outToken = gss_buffer_desc(length: 0, value: nil)
        defer { var m: OM_uint32 = 0; gss_release_buffer(&m, &outToken) }
        let major = token.withUnsafeBytes { raw -> OM_uint32 in
            var inToken = gss_buffer_desc(length: raw.count, value: UnsafeMutableRawPointer(mutating: raw.baseAddress))
            return gss_accept_sec_context(&minor, &context, nil, &inToken, nil, &name, nil, &outToken, nil, nil, nil)
        }
        defer { if name != nil { var m: OM_uint32 = 0; gss_release_name(&m, &name) } }
        if pgmux_gss_error(major) != 0 {
            return .refused("accepting GSS security context failed: \(Self.describe(major: major, minor: minor))")
        }
        output = outToken.length > 0 ? Array(UnsafeRawBufferPointer(start: outToken.value, count: outToken.length)) : []
        complete = pgmux_gss_continue_needed(major) == 0
        if complete {
            var text = gss_buffer_desc(length: 0, value: nil)
            defer { var m: OM_uint32 = 0; gss_release_buffer(&m, &text) }
            guard gss_display_name(&minor, name, &text, nil) == GSS_S_COMPLETE else {
                output = nil
                return .refused("retrieving GSS user name failed")
            }
            principal = String(decoding: UnsafeRawBufferPointer(start: text.value, count: text.length), as: UTF8.self)
        }
        return .accepted
    }

    /// The GSS and mechanism messages of a status, for the log.
    private static func describe(major: OM_uint32, minor: OM_uint32) -> String {
        func messages(_ code: OM_uint32, _ type: OM_uint32) -> String {
            var texts: [String] = []
            var context: OM_uint32 = 0
            repeat {
                var m: OM_uint32 = 0
                var text = gss_buffer_desc(length: 0, value: nil)
                guard gss_display_status(&m, code, Int32(type), nil, &context, &text) == GSS_S_COMPLETE else { break }
                texts.append(String(decoding: UnsafeRawBufferPointer(start: text.value, count: text.length), as: UTF8.self))
                gss_release_buffer(&m, &text)
            } while context != 0
            return texts.joined(separator: ", ")
        }
        return messages(major, pgmux_gss_c_gss_code()) + ": " + messages(minor, pgmux_gss_c_mech_code())
    }
}
