import Glibc
import CPAM

/// One PAM password check, as PgBouncer's pam_check_passwd: pam_start with the service name,
/// PAM_RHOST set to the client's address, pam_authenticate then pam_acct_mgmt (expired accounts,
/// access hours), both PAM_SILENT; the conversation answers password prompts with the client's
/// password. Blocking: runs on a BlockingAuthWorker thread, never on the loop.
struct PAMAuthentication: Sendable {
    let service: String
    let user: String
    let password: [UInt8]
    let remoteHost: String

    /// The verdict, and for a refusal the reason to log (PgBouncer's warning texts).
    func run() -> BlockingAuthWorker.Verdict {
        // The conversation's appdata: the password as a C string, alive for the whole check.
        let secret = UnsafeMutablePointer<CChar>.allocate(capacity: password.count + 1)
        defer {
            memset(secret, 0, password.count + 1)
            secret.deallocate()
        }
        for (i, byte) in password.enumerated() { secret[i] = CChar(bitPattern: byte) }
        secret[password.count] = 0
        var conversation = pam_conv(conv: pamConversation, appdata_ptr: UnsafeMutableRawPointer(secret))
        var handle: OpaquePointer?
        var rc = pam_start(service, user, &conversation, &handle)
        guard rc == PAM_SUCCESS, let handle else {
            return .refused("pam_start() failed: \(String(cString: pam_strerror(nil, rc)))")
        }
        rc = pam_set_item(handle, PAM_RHOST, remoteHost)
        guard rc == PAM_SUCCESS else {
            pam_end(handle, rc)
            return .refused("pam_set_item(): can't set PAM_RHOST to '\(remoteHost)'")
        }
        rc = pam_authenticate(handle, Int32(PAM_SILENT))
        guard rc == PAM_SUCCESS else {
            let why = String(cString: pam_strerror(handle, rc))
            pam_end(handle, rc)
            return .refused("pam_authenticate() failed: \(why)")
        }
        rc = pam_acct_mgmt(handle, Int32(PAM_SILENT))
        guard rc == PAM_SUCCESS else {
            let why = String(cString: pam_strerror(handle, rc))
            pam_end(handle, rc)
            return .refused("pam_acct_mgmt() failed: \(why)")
        }
        rc = pam_end(handle, rc)
        guard rc == PAM_SUCCESS else { return .refused("pam_end() failed: \(String(cString: pam_strerror(nil, rc)))") }
        return .accepted
    }
}

/// PAM's conversation callback: every hidden prompt (PAM_PROMPT_ECHO_OFF) gets the password;
/// other messages get no answer. Answers are malloc'ed: PAM frees them.
private func pamConversation(_ count: Int32, _ messages: UnsafeMutablePointer<UnsafePointer<pam_message>?>?,
                             _ responses: UnsafeMutablePointer<UnsafeMutablePointer<pam_response>?>?,
                             _ appdata: UnsafeMutableRawPointer?) -> Int32 {
    guard count > 0, let messages, let responses, let appdata else { return PAM_CONV_ERR }
    guard let answers = calloc(Int(count), MemoryLayout<pam_response>.stride)?
        .bindMemory(to: pam_response.self, capacity: Int(count)) else { return PAM_CONV_ERR }
    let password = appdata.assumingMemoryBound(to: CChar.self)
    for i in 0..<Int(count) {
        guard let message = messages[i], message.pointee.msg_style == PAM_PROMPT_ECHO_OFF else { continue }
        guard let copy = strdup(password) else {
            for j in 0..<i { free(answers[j].resp) }
            free(answers)
            return PAM_CONV_ERR
        }
        answers[i].resp = copy
    }
    responses.pointee = answers
    return PAM_SUCCESS
}
