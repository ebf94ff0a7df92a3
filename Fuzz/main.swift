// libFuzzer entry point for pgmux's untrusted-input parsers (built by `make fuzz`, compiled
// together with Sources/PgmuxCore as one module, so FuzzHarness needs no import).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    FuzzHarness.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
