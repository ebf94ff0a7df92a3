/// Walks a relay buffer message by message without decoding bodies. Bodies of messages the pooler
/// does not need to read pass through in pieces as they arrive (`passthrough`), so a 1 GB DataRow
/// streams with a fixed-size buffer. Only messages that must be read whole (ReadyForQuery,
/// ParameterStatus) stop the walk, and only when they fit the buffer.
public struct RelayScanner: Sendable {
    /// Body bytes of the current message that are still to come and pass through unread.
    public var passthrough = 0

    public init() {}

    public enum Step: Equatable {
        /// Everything before `position` may be forwarded; the rest waits for more bytes.
        case needMore(position: Int)
        /// A complete message the caller asked to see, at `start` with `total` bytes.
        case message(type: UInt8, start: Int, total: Int)
        /// A message header the caller asked to see; its body will pass through.
        case header(type: UInt8, start: Int, total: Int)
        /// A length field outside the protocol's limits.
        case invalid(length: Int)
    }

    /// Advances over `[position, end)` of `base`. `wantWhole(type)` says which message types must
    /// be delivered whole (they must also fit in `capacity`); `wantHeader(type)` which ones are
    /// reported by header. Others are skipped silently.
    @inlinable @inline(__always)
    public mutating func next(_ base: UnsafeRawPointer, position: Int, end: Int, capacity: Int,
                              maxPacketSize: Int, wantWhole: (UInt8) -> Bool,
                              wantHeader: (UInt8) -> Bool) -> Step {
        var pos = position
        while true {
            if passthrough > 0 {
                let take = min(passthrough, end - pos)
                passthrough -= take
                pos += take
                if passthrough > 0 { return .needMore(position: pos) }
            }
            switch Framing.peek(base + pos, available: end - pos, maxPacketSize: maxPacketSize) {
            case .needHeader:
                return .needMore(position: pos)
            case .invalid(let length):
                return .invalid(length: length)
            case .message(let type, let total):
                if wantWhole(type) && total <= capacity {
                    if end - pos < total { return .needMore(position: pos) }
                    return .message(type: type, start: pos, total: total)
                }
                passthrough = total
                if wantHeader(type) { return .header(type: type, start: pos, total: total) }
            }
        }
    }
}
