import Glibc
import PgmuxCore
import PgmuxIO

/// Entry point: parse the command line, load the config, set up the process, run the loop.
@main
struct Main {
    static func main() {
        signal(SIGPIPE, SIG_IGN)
        let options: CommandLineOptions
        do { options = try CommandLineOptions.parse(Array(CommandLine.arguments.dropFirst())) } catch {
            ProcessSetup.fail("\(error)")
        }
        if options.showHelp { print(CommandLineOptions.usage); return }
        if options.showVersion { print("pgmux \(Version.string)\nPgBouncer-compatible (1.25)"); return }

        let config: Config
        do { config = try Config.load(path: options.configPath!) } catch {
            ProcessSetup.fail("cannot load config file: \(error)")
        }
        let log = Log()
        log.quiet = options.quiet || options.daemon
        log.verbose = max(options.verbose, config.settings.verbose)
        for w in config.warnings { log.warning(w) }

        let runAs = options.user ?? config.settings.user
        if geteuid() == 0 && runAs == nil {
            ProcessSetup.fail("pgmux should not run as root (use -u USER to switch to another user)")
        }
        if options.daemon && config.settings.pidfile.isEmpty {
            ProcessSetup.fail("in daemon mode pidfile must be set")
        }
        let takeover = options.reboot ? ProcessSetup.takeOver(config.settings, log: log.log) : nil
        if takeover == nil { ProcessSetup.checkPidFile(config.settings.pidfile, log: log.log) }
        ProcessSetup.raiseFileLimit(wanted: config.settings.maxClientConn + 100, log: log.warning)
        if let runAs, geteuid() == 0 { ProcessSetup.dropPrivileges(to: runAs) }
        if options.daemon { ProcessSetup.daemonize() }
        log.open(path: config.settings.logfile)
        log.configureSyslog(enabled: config.settings.syslog, ident: config.settings.syslogIdent,
                            facility: config.settings.syslogFacility)
        ProcessSetup.writePidFile(config.settings.pidfile)

        do {
            // Loop 0 listens, handles signals and takes over; the others accept on its sockets.
            let loops = try LoopGroup.makeLoops(config: config, log: log)
            loops[0].takeoverHandshake = takeover
            loops[0].successorCommand = SuccessorCommand(arguments: Array(CommandLine.arguments.dropFirst()))
            log.log("pgmux \(Version.string) starting")
            // Every loop lives until the process ends: the group and the other loops' threads
            // reach them unretained.
            try withExtendedLifetime(loops) { try loops[0].run() }
        } catch {
            log.write(.fatal, "\(error)")
            ProcessSetup.removePidFile(config.settings.pidfile)
            exit(1)
        }
        ProcessSetup.removePidFile(config.settings.pidfile)
        log.log("shutdown complete")
    }
}
