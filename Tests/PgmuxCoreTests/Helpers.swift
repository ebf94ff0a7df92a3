import XCTest
@testable import PgmuxCore

/// Runs `body`, fails the test unless it throws a ConfigError, and returns that error.
func configError<T>(_ body: () throws(ConfigError) -> T, file: StaticString = #filePath, line: UInt = #line) -> ConfigError? {
    do {
        _ = try body()
        XCTFail("expected a ConfigError", file: file, line: line)
        return nil
    } catch {
        return error
    }
}

func noIncludes(_ path: String) throws(ConfigError) -> String {
    throw ConfigError(file: path, line: 0, message: "no includes in this test")
}

/// Parses and loads config text from memory.
func loadConfig(_ text: String, file: String = "test.ini", includes: [String: String] = [:]) throws(ConfigError) -> Config {
    let entries = try IniParser.parse(text: text, file: file) { (path: String) throws(ConfigError) -> String in
        guard let t = includes[path] else { throw ConfigError(file: path, line: 0, message: "not found") }
        return t
    }
    return try Config.load(entries: entries, path: file)
}
