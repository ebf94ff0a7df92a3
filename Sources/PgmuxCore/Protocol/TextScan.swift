/// Case-insensitive keyword search in statement texts, for the cheap scans that decide when pgmux
/// must look closer (`SessionPins`, `DirtySession`): no allocation, ASCII letters folded.
enum TextScan {
    /// Whether `text` contains the lower-case `needle`, ignoring ASCII case.
    static func contains(_ text: UnsafeRawBufferPointer, _ needle: StaticString) -> Bool {
        let n = needle.utf8CodeUnitCount
        guard text.count >= n else { return false }
        let pattern = needle.utf8Start
        var i = 0
        while i <= text.count - n {
            var j = 0
            while j < n && lower(text[i + j]) == pattern[j] { j += 1 }
            if j == n { return true }
            i += 1
        }
        return false
    }

    @inline(__always) static func lower(_ c: UInt8) -> UInt8 {
        c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z") ? c | 0x20 : c
    }
}
