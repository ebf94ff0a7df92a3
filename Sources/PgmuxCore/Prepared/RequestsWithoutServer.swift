/// Parse + Sync of a statement pgmux already knows, answered without a server.
///
/// libpq's `PQprepare` (pgbench `-M prepared`, many drivers' explicit prepare) sends Parse + Sync
/// and blocks its thread until the answer. In transaction pooling a client between transactions
/// holds no server, so that Parse used to wait in the pool's queue. When the same application
/// thread's other connections hold every server inside open transactions (pgbench with `-j`
/// below `-c`, a worker pool sharing one thread), those transactions can only finish once the
/// blocked call returns, and the call only returns once one of them finishes: a deadlock that no
/// timeout but `query_wait_timeout` ends. PgBouncer needs a server for every Parse and hangs the
/// same way.
///
/// A Parse whose statement text and parameter types a server has already accepted needs no
/// server: PgBouncer itself answers such a Parse with a fake ParseComplete when the server it got
/// already holds the statement. pgmux registers the client's name and answers ParseComplete, and
/// ReadyForQuery 'I' for the Sync (a client that holds no server is between transactions).
extension PreparedStatementRewriter {
    public struct ServerlessAnswer: Equatable {
        /// Leading bytes of the client's pending input that are answered (whole batches, each
        /// ending with its Sync); the rest still needs a server.
        public var consumed: Int
        /// ParseComplete for each Parse, ReadyForQuery 'I' for each Sync, in order.
        public var reply: [UInt8]
        public var parses: Int
    }

    /// Answers the leading batches of `pending` that consist only of named Parses of validated
    /// statements followed by a Sync. Nil when the input does not start with such a batch
    /// (anything else, an unknown or failed statement, a name already in use, a partial message).
    public mutating func answerWithoutServer(_ pending: UnsafeRawBufferPointer, registry: PreparedStatementRegistry,
                                             maxPacketSize: Int) -> ServerlessAnswer? {
        var answer = ServerlessAnswer(consumed: 0, reply: [], parses: 0)
        var batch: [(name: String, id: Int)] = []
        var pos = 0
        walk: while pending.count - pos >= 5 {
            let type = pending[pos]
            let length = Int(pending[pos + 1]) << 24 | Int(pending[pos + 2]) << 16
                | Int(pending[pos + 3]) << 8 | Int(pending[pos + 4])
            guard length >= 4, length <= maxPacketSize, pending.count - pos - 1 >= length else { break }
            let body = UnsafeRawBufferPointer(rebasing: pending[(pos + 5)..<(pos + 1 + length)])
            switch type {
            case UInt8(ascii: "P"):
                var r = BodyCursor(body)
                guard let name = r.cString(), !name.isEmpty, clientStatements[name] == nil,
                      !batch.contains(where: { $0.name == name }),
                      let id = registry.validatedID(for: UnsafeRawBufferPointer(rebasing: body[r.offset...]))
                else { break walk }
                batch.append((name, id))
            case UInt8(ascii: "S"):
                for (name, id) in batch {
                    clientStatements[name] = id
                    answer.reply += [UInt8(ascii: "1"), 0, 0, 0, 4]
                }
                answer.reply += [UInt8(ascii: "Z"), 0, 0, 0, 5, UInt8(ascii: "I")]
                answer.parses += batch.count
                batch.removeAll()
                answer.consumed = pos + 1 + length
            default:
                break walk
            }
            pos += 1 + length
        }
        guard answer.consumed > 0 else { return nil }
        parses += answer.parses
        hits += answer.parses
        return answer
    }
}

/// `DEALLOCATE name` of a statement the client prepared, and `DEALLOCATE ALL`, from a client that
/// holds no server: only the client's names change (servers keep their copies for other
/// clients), so the answer needs no server. PHP PDO frees every statement this way; taking a
/// server for each would cost a round trip and a place in the queue.
extension PreparedStatementRewriter {
    /// The reply to the simple Query at the start of `pending` when it is such a DEALLOCATE
    /// (CommandComplete, ReadyForQuery 'I') and how many bytes it took; nil otherwise.
    public mutating func answerDeallocateWithoutServer(_ pending: UnsafeRawBufferPointer,
                                                       maxPacketSize: Int) -> (consumed: Int, reply: [UInt8])? {
        guard pending.count >= 6, pending[0] == UInt8(ascii: "Q") else { return nil }
        let length = Int(pending[1]) << 24 | Int(pending[2]) << 16 | Int(pending[3]) << 8 | Int(pending[4])
        guard length >= 5, length <= maxPacketSize, pending.count - 1 >= length, pending[length] == 0 else { return nil }
        let tag: String
        switch PreparedStatementSQL.classify(UnsafeRawBufferPointer(rebasing: pending[5..<length])) {
        case .deallocate(let name):
            guard clientStatements.removeValue(forKey: name) != nil else { return nil }
            tag = "DEALLOCATE"
        case .deallocateAll:
            forgetAll()
            tag = "DEALLOCATE ALL"
        default:
            return nil
        }
        let complete = PreparedStatementRegistry.message(UInt8(ascii: "C"), Array(tag.utf8) + [0])
        return (length + 1, complete + [UInt8(ascii: "Z"), 0, 0, 0, 5, UInt8(ascii: "I")])
    }
}

/// A Flush from a client that holds no server: no output is owed, so it needs no server. libpq
/// pipelines send Flush right after Sync; when it arrives after the server was released, taking a
/// server for it would pin that server (nothing it sends is ever answered by ReadyForQuery).
public enum FlushWithoutServer {
    /// Bytes of the complete Flush messages at the start of `pending`.
    public static func leadingBytes(_ pending: UnsafeRawBufferPointer) -> Int {
        var pos = 0
        while pending.count - pos >= 5 && pending[pos] == UInt8(ascii: "H") && pending[pos + 1] == 0
                && pending[pos + 2] == 0 && pending[pos + 3] == 0 && pending[pos + 4] == 4 {
            pos += 5
        }
        return pos
    }
}
