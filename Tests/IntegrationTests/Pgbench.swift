import Foundation

/// Runs pgbench against a port and returns its summary; any error or failed transaction throws.
struct PgbenchResult {
    let tps: Double
    let transactions: Int
    let output: String
}

enum Pgbench {
    static func run(port: Int, user: (String, String) = PostgresCluster.scramUser, clients: Int, seconds: Int,
                    args: [String] = ["-S"], database: String = PostgresCluster.database,
                    timeout: Double? = nil, env: [String: String] = [:]) throws -> PgbenchResult {
        let output = try Shell.run("/usr/bin/pgbench",
                                   ["-n", "-c", "\(clients)", "-j", "2", "-T", "\(seconds)", "-h", "127.0.0.1",
                                    "-p", "\(port)", "-U", user.0] + args + [database],
                                   env: env.merging(["PGPASSWORD": user.1]) { $1 }, timeout: timeout ?? Double(seconds) + 60)
        if output.contains("error") || output.contains("aborted") {
            throw Shell.Failed(command: "pgbench", status: 0, output: output)
        }
        var tps = 0.0, tx = 0
        for line in output.split(separator: "\n") {
            if line.hasPrefix("tps = "), let v = Double(line.dropFirst(6).split(separator: " ").first ?? "") { tps = v }
            if line.hasPrefix("number of transactions actually processed: "),
               let v = Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces).split(separator: "/").first ?? "") { tx = v }
            if line.hasPrefix("number of failed transactions: "), !line.contains(": 0 ") {
                throw Shell.Failed(command: "pgbench", status: 0, output: output)
            }
        }
        return PgbenchResult(tps: tps, transactions: tx, output: output)
    }
}
