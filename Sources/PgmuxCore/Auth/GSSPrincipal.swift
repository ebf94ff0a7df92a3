/// Which name a GSSAPI principal logs in as, as PostgreSQL's pg_GSS_checkauth: the realm is
/// checked against `krb_realm` when one is set, and dropped from the name unless `include_realm`
/// (default 1) keeps it; the name must then equal the login name, or be allowed by the rule's
/// ident map.
public enum GSSPrincipal {
    /// The name to compare with the login name (or to look up in the ident map); a failure
    /// carries the reason to log.
    public static func systemUser(_ principal: String, includeRealm: Bool, requiredRealm: String?) -> Result<String, Refusal> {
        guard let at = principal.firstIndex(of: "@") else {
            if let realm = requiredRealm, !realm.isEmpty {
                return .failure(Refusal(reason: "GSSAPI did not return realm but realm matching was requested"))
            }
            return .success(principal)
        }
        let realm = principal[principal.index(after: at)...]
        if let required = requiredRealm, !required.isEmpty, required != realm {
            return .failure(Refusal(reason: "GSSAPI realm (\(realm)) and configured realm (\(required)) don't match"))
        }
        return .success(includeRealm ? principal : String(principal[..<at]))
    }

    public struct Refusal: Error, Equatable {
        public let reason: String
    }
}
