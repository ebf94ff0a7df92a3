/// Case-insensitive keyword matching in statement texts, for the cheap scans that decide when
/// pgmux must look closer (`SessionPins`, `DirtySession`): no allocation, ASCII letters folded.
enum TextScan {
    /// Whether the lower-case `needle` starts at `i` of `text`, ignoring ASCII case.
    @inline(__always)
    static func matches(_ text: UnsafeRawBufferPointer, at i: Int, _ needle: StaticString) -> Bool {
        let n = needle.utf8CodeUnitCount
        guard text.count - i >= n else { return false }
        let pattern = needle.utf8Start
        var j = 1  // the caller matched the first letter
        while j < n && lower(text[i + j]) == pattern[j] { j += 1 }
        return j == n
    }

    @inline(__always) static func lower(_ c: UInt8) -> UInt8 {
        c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z") ? c | 0x20 : c
    }
}
