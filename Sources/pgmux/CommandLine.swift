/// PgBouncer's command line: `pgmux [-d] [-R] [-q] [-v] [-u user] [-V] [-h] CONFIG`.
struct CommandLineOptions {
    var daemon = false
    /// -R: take the listening sockets and clients over from a running pgmux (online restart).
    var reboot = false
    var quiet = false
    var verbose = 0
    var user: String?
    var configPath: String?
    var showVersion = false
    var showHelp = false

    enum ParseError: Error, CustomStringConvertible {
        case message(String)
        var description: String { if case .message(let m) = self { return m }; return "" }
    }

    static let usage = """
        pgmux is a PostgreSQL connection pooler, a drop-in replacement for PgBouncer.

        Usage:
          pgmux [OPTION]... CONFIG_FILE

        Options:
          -d, --daemon         run in the background (needs pidfile)
          -q, --quiet          run quietly (no log to stderr)
          -v, --verbose        increase verbosity (repeatable)
          -u, --user=USERNAME  switch to this user after start
          -R, --reboot         do an online restart (take over from the running process)
          -V, --version        show version, then exit
          -h, --help           show this help, then exit
        """

    static func parse(_ args: [String]) throws -> CommandLineOptions {
        var o = CommandLineOptions()
        var i = 0
        var files: [String] = []
        while i < args.count {
            let a = args[i]
            i += 1
            if a.hasPrefix("--") {
                let parts = a.dropFirst(2).split(separator: "=", maxSplits: 1).map(String.init)
                switch parts.first ?? "" {
                case "daemon": o.daemon = true
                case "quiet": o.quiet = true
                case "verbose": o.verbose += 1
                case "version": o.showVersion = true
                case "help": o.showHelp = true
                case "user":
                    if parts.count == 2 { o.user = parts[1] }
                    else if i < args.count { o.user = args[i]; i += 1 }
                    else { throw ParseError.message("option --user needs a value") }
                case "reboot": o.reboot = true
                default: throw ParseError.message("unknown option: \(a)")
                }
            } else if a.hasPrefix("-") && a.count > 1 {
                var flags = Array(a.dropFirst())
                while !flags.isEmpty {
                    let f = flags.removeFirst()
                    switch f {
                    case "d": o.daemon = true
                    case "q": o.quiet = true
                    case "v": o.verbose += 1
                    case "V": o.showVersion = true
                    case "h": o.showHelp = true
                    case "u":
                        if !flags.isEmpty { o.user = String(flags); flags.removeAll() }
                        else if i < args.count { o.user = args[i]; i += 1 }
                        else { throw ParseError.message("option -u needs a value") }
                    case "R": o.reboot = true
                    default: throw ParseError.message("unknown option: -\(f)")
                    }
                }
            } else {
                files.append(a)
            }
        }
        if o.showHelp || o.showVersion { return o }
        guard files.count == 1 else { throw ParseError.message("Need one config file.  See pgmux -h") }
        o.configPath = files[0]
        return o
    }
}
