/// First-come first-served queue of waiting clients. Appends and pops are O(1) (a head index over
/// an array, compacted when half is consumed); removal of a client that gave up is O(n), which
/// is rare and bounded by the queue length.
public struct FIFOQueue<Element> {
    private var items: [Element] = []
    private var head = 0

    public init() {}

    public var count: Int { items.count - head }
    public var isEmpty: Bool { head == items.count }
    public var first: Element? { isEmpty ? nil : items[head] }

    public mutating func append(_ e: Element) { items.append(e) }

    public mutating func popFirst() -> Element? {
        guard head < items.count else { return nil }
        let e = items[head]
        head += 1
        if head == items.count { items.removeAll(keepingCapacity: true); head = 0 }
        else if head > 64 && head * 2 > items.count { items.removeFirst(head); head = 0 }
        return e
    }

    /// Removes the first element `matching`, if any.
    public mutating func remove(where matching: (Element) -> Bool) {
        guard let i = items[head...].firstIndex(where: matching) else { return }
        items.remove(at: i)
    }

    /// Empties the queue, returning its elements in order.
    public mutating func drain() -> [Element] {
        defer { items.removeAll(); head = 0 }
        return Array(items[head...])
    }

    public var elements: ArraySlice<Element> { items[head...] }
}

extension FIFOQueue: Sendable where Element: Sendable {}
