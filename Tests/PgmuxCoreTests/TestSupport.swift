import XCTest
@testable import PgmuxCore

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
func text(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self) }

func int32BE(_ v: Int32) -> [UInt8] {
    let u = UInt32(bitPattern: v)
    return [UInt8(u >> 24), UInt8((u >> 16) & 0xff), UInt8((u >> 8) & 0xff), UInt8(u & 0xff)]
}

func unwrapSuccess<T>(_ r: Result<T, SCRAMFailure>, file: StaticString = #filePath, line: UInt = #line) throws -> T {
    switch r {
    case .success(let v): return v
    case .failure(let f):
        XCTFail("unexpected SCRAM failure: \(f.message)", file: file, line: line)
        throw f
    }
}

func failure<T>(_ r: Result<T, SCRAMFailure>) -> SCRAMFailure? {
    if case .failure(let f) = r { return f }
    return nil
}

/// Deterministic PRNG for fuzz loops (reproducible failures).
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

// MARK: wire glue for driving the two state machines against each other

/// Encodes the pooler-as-server's action as the body of an 'R' message (what PostgreSQL would send).
func authRequestBody(_ action: ClientAuthAction) -> [UInt8]? {
    switch action {
    case .sendAuthenticationCleartext: return int32BE(3)
    case .sendAuthenticationMD5(let salt): return int32BE(5) + salt
    case .sendAuthenticationSASL(let mechs):
        return int32BE(10) + mechs.flatMap { bytes($0) + [0] } + [0]
    case .sendSASLContinue(let d): return int32BE(11) + d
    case .sendSASLFinal(let d): return int32BE(12) + d
    case .succeeded: return int32BE(0)
    case .sendAuthenticationGSS: return int32BE(7)
    case .sendGSSContinue(let d): return int32BE(8) + d
    case .failed, .deriveKeys, .verifyExternally, .acceptGSSToken: return nil
    }
}

/// Encodes the pooler-as-client's action as the body of a 'p' message.
func passwordBody(_ action: ServerAuthAction) -> [UInt8]? {
    switch action {
    case .sendPassword(let s): return bytes(s) + [0]
    case .sendSASLInitial(let mech, let data): return bytes(mech) + [0] + int32BE(Int32(data.count)) + data
    case .sendSASLResponse(let d): return d
    case .none, .authenticated, .failed, .deriveKeys: return nil
    }
}

enum LoginOutcome: Equatable {
    case bothAuthenticated
    case clientSideFailed(String)   // the authenticating side (ClientAuthenticator) refused
    case serverSideFailed(String)   // the logging-in side (ServerAuthenticator) gave up
}

/// Runs a whole login: `verifier` plays the server (PgBouncer facing a client / PostgreSQL),
/// `prover` plays the client (PgBouncer logging in to a server).
func runLogin(verifier: inout ClientAuthenticator, prover: inout ServerAuthenticator,
              file: StaticString = #filePath, line: UInt = #line) -> LoginOutcome {
    var action = verifier.startSync()
    for _ in 0..<10 {
        if case .failed(let m) = action { return .clientSideFailed(m) }
        guard let rBody = authRequestBody(action) else { return .clientSideFailed("?") }
        let answer = prover.receiveSync(rBody)
        switch answer {
        case .authenticated:
            XCTAssertTrue(verifier.isAuthenticated, file: file, line: line)
            return .bothAuthenticated
        case .failed(let m):
            return .serverSideFailed(m)
        case .none:
            // SASLFinal verified; the verifier is authenticated, AuthenticationOk follows.
            XCTAssertTrue(verifier.isAuthenticated, file: file, line: line)
            action = .succeeded
        case .deriveKeys:
            return .serverSideFailed("unresolved derivation")
        case .sendPassword, .sendSASLInitial, .sendSASLResponse:
            guard let pBody = passwordBody(answer) else { return .serverSideFailed("?") }
            action = verifier.receivePasswordSync(pBody)
        }
    }
    XCTFail("login did not terminate", file: file, line: line)
    return .serverSideFailed("loop")
}

// MARK: the crypto worker's part, inline

/// Tests drive the authenticators as the shell does, with the worker's derivation run inline.
extension ClientAuthenticator {
    mutating func resolved(_ action: ClientAuthAction) -> ClientAuthAction {
        var a = action
        while case .deriveKeys(let request) = a { a = keysDerived(request.run()) }
        return a
    }
    mutating func startSync() -> ClientAuthAction { resolved(start()) }
    mutating func receivePasswordSync(_ payload: [UInt8]) -> ClientAuthAction { resolved(receivePassword(payload)) }
}

extension ServerAuthenticator {
    mutating func receiveSync(_ body: [UInt8]) -> ServerAuthAction {
        var a = receive(body)
        while case .deriveKeys(let request) = a { a = keysDerived(request.run()) }
        return a
    }
}
