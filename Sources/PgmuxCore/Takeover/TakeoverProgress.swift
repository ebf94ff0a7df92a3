/// Where an online restart stands in this process, for SHOW STATE and the exit decision.
public struct TakeoverProgress: Equatable, Sendable {
    public enum Phase: String, Sendable {
        /// No restart under way.
        case none = "no"
        /// Old process: the listening sockets were sent; it still accepts until the new one is ready.
        case offered = "offered"
        /// Old process: the new one accepts; idle clients go to it, the rest finish here.
        case handingOver = "handing over"
        /// New process: clients still arrive from the old one.
        case receiving = "receiving"
    }
    public var phase: Phase = .none
    /// Clients sent (old process) or adopted (new process) so far.
    public var clients = 0
    /// Servers sent or adopted so far.
    public var servers = 0
    public init() {}

    /// The old process leaves once the new one took over and it holds no client that could still
    /// move or finish here (console clients do not keep it).
    public func oldProcessMayExit(remainingClients: Int, inFlight: Int) -> Bool {
        phase == .handingOver && remainingClients == 0 && inFlight == 0
    }

    /// SHOW STATE rows after PgBouncer's active / paused / suspended; none while no restart is
    /// under way, so the usual answer stays PgBouncer's.
    public var stateRows: [[String]] {
        phase == .none ? [] : [["restart", phase.rawValue], ["restart_clients", String(clients)], ["restart_servers", String(servers)]]
    }
}
