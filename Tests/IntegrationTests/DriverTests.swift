import Foundation
import XCTest

/// Real drivers through transaction pooling, where they used to break.
final class DriverTests: XCTestCase {
    /// PHP PDO with server-side prepares (ATTR_EMULATE_PREPARES = false) names its statements
    /// `pdo_stmt_%08x` and frees each with SQL `DEALLOCATE` when the statement object goes.
    /// Through a pooler that renames statements, PostgreSQL answered "prepared statement does not
    /// exist", which aborted the application's transaction (PgBouncer #991, #1041).
    func testPHPPDOFreesItsStatementsInsideAndOutsideTransactions() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/php") else {
            throw XCTSkip("php-cli with pdo_pgsql is not installed (scripts/deps.sh installs it)")
        }
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "2"])
        let script = pgmux.dir + "/pdo.php"
        try """
            <?php
            $pdo = new PDO(getenv('DSN'), getenv('PGUSER'), getenv('PGPASSWORD'),
                           [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION, PDO::ATTR_EMULATE_PREPARES => false]);
            for ($i = 0; $i < 40; $i++) {
                $inTx = $i % 2 == 0;
                if ($inTx) { $pdo->beginTransaction(); }
                $st = $pdo->prepare('SELECT ?::int + ' . ($i % 4));
                $st->execute([$i]);
                $v = (int)$st->fetchColumn();
                if ($v !== $i + $i % 4) { fwrite(STDERR, "wrong result $v at $i\\n"); exit(1); }
                $st = null;  // DEALLOCATE pdo_stmt_...
                $again = $pdo->query('SELECT ' . $i)->fetchColumn();  // the transaction goes on
                if ((int)$again !== $i) { fwrite(STDERR, "wrong $again\\n"); exit(1); }
                if ($inTx) { $pdo->commit(); }
            }
            echo "ok\\n";
            """.write(toFile: script, atomically: true, encoding: .utf8)
        let env = ["DSN": "pgsql:host=127.0.0.1;port=\(pgmux.port);dbname=\(PostgresCluster.database)",
                   "PGUSER": PostgresCluster.scramUser.0, "PGPASSWORD": PostgresCluster.scramUser.1]
        // Three processes at once on two servers: statements meet servers that never saw them.
        let group = DispatchGroup()
        let results = ResultsBox()
        for _ in 0..<3 {
            group.enter()
            DispatchQueue.global().async {
                let r = try? Shell.runStatus("/usr/bin/php", [script], env: env, timeout: 60)
                results.append(r.map { "\($0.status) \($0.output)" } ?? "did not run")
                group.leave()
            }
        }
        XCTAssertEqual(group.wait(timeout: .now() + 90), .success)
        XCTAssertEqual(results.values, Array(repeating: "0 ok\n", count: 3))
    }
}

final class ResultsBox: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func append(_ s: String) { lock.lock(); items.append(s); lock.unlock() }
    var values: [String] { lock.lock(); defer { lock.unlock() }; return items }
}
