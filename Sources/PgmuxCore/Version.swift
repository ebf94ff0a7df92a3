/// pgmux's version, shown by `-V`, in logs and (later) SHOW VERSION.
public enum Version {
    public static let string = "0.1.0"
}
