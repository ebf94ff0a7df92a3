import Foundation
import XCTest

/// Real drivers through transaction pooling, where they used to break.
final class DriverTests: XCTestCase {
    /// PHP PDO with server-side prepares (ATTR_EMULATE_PREPARES = false) names its statements
    /// `pdo_stmt_%08x` and frees each with SQL `DEALLOCATE` when the statement object goes.
    /// Through a pooler that renames statements, PostgreSQL answered "prepared statement does not
    /// exist", which aborted the application's transaction (PgBouncer #991, #1041).
    func testPHPPDOFreesItsStatementsInsideAndOutsideTransactions() throws {
        try runDriver("/usr/bin/php", "pdo.php", """
            <?php
            $pdo = new PDO('pgsql:host=127.0.0.1;port=' . getenv('PORT') . ';dbname=' . getenv('DB'),
                           getenv('PGUSER'), getenv('PGPASSWORD'),
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
            """)
    }

    /// Runs `program script` (or `program` alone, without a script) in `parallel` processes
    /// against a pool of two servers; each must print "ok".
    private func runDriver(_ program: String, _ scriptName: String, _ script: String?, parallel: Int = 3,
                           file: StaticString = #filePath, line: UInt = #line) throws {
        guard FileManager.default.isExecutableFile(atPath: program) else {
            throw XCTSkip("\(program) is not installed (scripts/deps.sh installs it)")
        }
        let pgmux = try PgmuxProcess(settings: ["default_pool_size": "2"])
        let path = pgmux.dir + "/" + scriptName
        try script?.write(toFile: path, atomically: true, encoding: .utf8)
        let args = script == nil ? [] : [path]
        let env = ["PORT": "\(pgmux.port)", "DB": PostgresCluster.database,
                   "PGUSER": PostgresCluster.scramUser.0, "PGPASSWORD": PostgresCluster.scramUser.1]
        let group = DispatchGroup()
        let results = ResultsBox()
        for _ in 0..<parallel {
            group.enter()
            DispatchQueue.global().async {
                let r = try? Shell.runStatus(program, args, env: env, timeout: 60)
                results.append(r.map { "\($0.status) \($0.output)" } ?? "did not run")
                group.leave()
            }
        }
        XCTAssertEqual(group.wait(timeout: .now() + 90), .success, file: file, line: line)
        XCTAssertEqual(results.values, Array(repeating: "0 ok\n", count: parallel), file: file, line: line)
    }

    /// Ruby pg: prepare / exec_prepared, SQL DEALLOCATE, the same name prepared again with
    /// another text, inside and outside transactions.
    func testRubyPG() throws {
        try runDriver("/usr/bin/ruby", "pg.rb", """
            require 'pg'
            c = PG.connect(host: '127.0.0.1', port: ENV['PORT'], dbname: ENV['DB'], user: ENV['PGUSER'], password: ENV['PGPASSWORD'])
            30.times do |i|
              c.prepare('s1', 'SELECT $1::int + 1')
              raise "wrong" unless c.exec_prepared('s1', [i]).getvalue(0, 0).to_i == i + 1
              c.exec('DEALLOCATE s1')
              c.prepare('s1', 'SELECT $1::int * 2')
              raise "wrong text" unless c.exec_prepared('s1', [i]).getvalue(0, 0).to_i == i * 2
              c.exec('DEALLOCATE s1')
              c.transaction { |t| t.prepare('s2', 'SELECT 7'); t.exec_prepared('s2'); t.exec('DEALLOCATE s2') } if i % 3 == 0
            end
            puts 'ok'
            """)
    }

    /// Perl DBD::Pg prepares on the server at first execute (dbdpg_p<pid>_<n>) and frees each
    /// statement with SQL DEALLOCATE when it goes.
    func testPerlDBDPg() throws {
        try runDriver("/usr/bin/perl", "pg.pl", """
            use strict; use DBI;
            my $dbh = DBI->connect("dbi:Pg:dbname=$ENV{DB};host=127.0.0.1;port=$ENV{PORT}", $ENV{PGUSER}, $ENV{PGPASSWORD},
                                   {RaiseError => 1, AutoCommit => 1, PrintError => 0});
            for my $i (0..29) {
                my $sth = $dbh->prepare('SELECT ?::int + 3');
                $sth->execute($i); my ($v) = $sth->fetchrow_array; die "wrong $v" unless $v == $i + 3;
                $sth->execute($i + 1); ($v) = $sth->fetchrow_array; die "wrong again $v" unless $v == $i + 4;
                undef $sth;
                if ($i % 3 == 0) {
                    $dbh->begin_work; my $s = $dbh->prepare('SELECT 1'); $s->execute; $s->finish; undef $s;
                    $dbh->do('SELECT 2'); $dbh->commit;
                }
            }
            print "ok\n";
            """)
    }

    /// Go pgx (v4, Debian's): its statement cache prepares named statements and, past its
    /// capacity, frees them with SQL DEALLOCATE; explicit Prepare/Deallocate of one name with two
    /// texts; four connections of one process on two servers. Built with Debian's Go in GOPATH mode.
    func testGoPgx() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/go"),
              FileManager.default.fileExists(atPath: "/usr/share/gocode/src/github.com/jackc/pgx/v4") else {
            throw XCTSkip("golang-go and golang-github-jackc-pgx-v4-dev are not installed (scripts/deps.sh installs them)")
        }
        let dir = NSTemporaryDirectory() + "pgmux-pgx-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try """
            package main

            import (
            \t"context"
            \t"fmt"
            \t"os"
            \t"sync"

            \t"github.com/jackc/pgx/v4"
            )

            func worker(k int) error {
            \tctx := context.Background()
            \turl := fmt.Sprintf("postgres://%s:%s@127.0.0.1:%s/%s?sslmode=disable&statement_cache_capacity=3",
            \t\tos.Getenv("PGUSER"), os.Getenv("PGPASSWORD"), os.Getenv("PORT"), os.Getenv("DB"))
            \tc, err := pgx.Connect(ctx, url)
            \tif err != nil {
            \t\treturn err
            \t}
            \tdefer c.Close(ctx)
            \tfor i := 0; i < 30; i++ {
            \t\tvar v int
            \t\tif err := c.QueryRow(ctx, fmt.Sprintf("SELECT $1::int + %d", i%5), i).Scan(&v); err != nil || v != i+i%5 {
            \t\t\treturn fmt.Errorf("cached statement %d: %v %v", i, v, err)
            \t\t}
            \t\tname := fmt.Sprintf("named_%d", k)
            \t\tif _, err := c.Prepare(ctx, name, "SELECT $1::int * 2"); err != nil {
            \t\t\treturn err
            \t\t}
            \t\tif err := c.QueryRow(ctx, name, i).Scan(&v); err != nil || v != i*2 {
            \t\t\treturn fmt.Errorf("named: %v %v", v, err)
            \t\t}
            \t\tif err := c.Deallocate(ctx, name); err != nil {
            \t\t\treturn err
            \t\t}
            \t\ttx, err := c.Begin(ctx)
            \t\tif err != nil {
            \t\t\treturn err
            \t\t}
            \t\tif _, err := tx.Prepare(ctx, name, "SELECT $1::int * 3"); err != nil {
            \t\t\treturn err
            \t\t}
            \t\tif err := tx.QueryRow(ctx, name, i).Scan(&v); err != nil || v != i*3 {
            \t\t\treturn fmt.Errorf("named in a transaction: %v %v", v, err)
            \t\t}
            \t\tif err := c.Deallocate(ctx, name); err != nil {
            \t\t\treturn err
            \t\t}
            \t\tif err := tx.Commit(ctx); err != nil {
            \t\t\treturn err
            \t\t}
            \t}
            \treturn nil
            }

            func main() {
            \tvar wg sync.WaitGroup
            \terrs := make(chan error, 4)
            \tfor k := 0; k < 4; k++ {
            \t\twg.Add(1)
            \t\tgo func(k int) { defer wg.Done(); errs <- worker(k) }(k)
            \t}
            \twg.Wait()
            \tclose(errs)
            \tfor err := range errs {
            \t\tif err != nil {
            \t\t\tfmt.Println(err)
            \t\t\tos.Exit(1)
            \t\t}
            \t}
            \tfmt.Println("ok")
            }
            """.write(toFile: dir + "/main.go", atomically: true, encoding: .utf8)
        try Shell.run("/usr/bin/go", ["build", "-o", dir + "/pgxtest", dir + "/main.go"],
                      env: ["GO111MODULE": "off", "GOPATH": "/usr/share/gocode", "GOCACHE": dir + "/cache", "HOME": dir])
        try runDriver(dir + "/pgxtest", "", nil, parallel: 2)
    }

    /// asyncpg prepares every query as a named statement, caches them and closes them with Close;
    /// four connections of one process share two servers.
    func testAsyncpg() throws {
        let python = FileManager.default.currentDirectoryPath + "/.build/pyvenv/bin/python"
        guard (try? Shell.run(python, ["-c", "import asyncpg"])) != nil else {
            throw XCTSkip("asyncpg is not installed in .build/pyvenv (scripts/pyvenv.sh installs it)")
        }
        try runDriver(python, "asyncpg_test.py", """
            import asyncio, os, asyncpg
            async def worker(k):
                c = await asyncpg.connect(host='127.0.0.1', port=int(os.environ['PORT']), user=os.environ['PGUSER'],
                                          password=os.environ['PGPASSWORD'], database=os.environ['DB'])
                for i in range(30):
                    assert await c.fetchval('SELECT $1::int + %d' % (k % 3), i) == i + k % 3
                    async with c.transaction():
                        st = await c.prepare('SELECT $1::int * 2')
                        assert await st.fetchval(i) == i * 2
                await c.close()
            async def main():
                await asyncio.gather(*(worker(k) for k in range(4)))
            asyncio.run(main())
            print('ok')
            """, parallel: 2)
    }
}

final class ResultsBox: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func append(_ s: String) { lock.lock(); items.append(s); lock.unlock() }
    var values: [String] { lock.lock(); defer { lock.unlock() }; return items }
}
