//! Identifiers: device codes and session tokens.

use rand::Rng;

/// Normalises a MAC-like device code: upper case, `-` separators; `:` accepted.
/// Returns `None` when it is not a sequence of 2-hex-digit groups (at least 6).
pub fn normalize_device_code(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let groups: Vec<&str> = raw.split(['-', ':']).collect();
    if groups.len() < 6 || groups.len() > 8 {
        return None;
    }
    if !groups
        .iter()
        .all(|g| g.len() == 2 && g.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return None;
    }
    Some(groups.join("-").to_ascii_uppercase())
}

/// A random, unguessable token: 128 bits as 32 lowercase hex digits.
pub fn new_token() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_codes_normalise_case_and_separators() {
        assert_eq!(
            normalize_device_code("11:22:33:44:55:66:77:8a").as_deref(),
            Some("11-22-33-44-55-66-77-8A")
        );
        assert_eq!(
            normalize_device_code("aa-bb-cc-dd-ee-ff").as_deref(),
            Some("AA-BB-CC-DD-EE-FF")
        );
        assert_eq!(normalize_device_code("11-22-33"), None);
        assert_eq!(normalize_device_code("zz-22-33-44-55-66"), None);
        assert_eq!(normalize_device_code(""), None);
    }

    #[test]
    fn tokens_are_128_bit_hex_and_distinct() {
        let a = new_token();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, new_token());
    }
}
