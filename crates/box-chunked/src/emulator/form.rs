//! Just enough `multipart/form-data` for Box's plain upload: named fields and their bytes.

/// The fields of a `multipart/form-data` body: (name, bytes). `None` when the content type has
/// no boundary or the body does not follow it.
pub(super) fn parse(content_type: &str, body: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .filter(|b| !b.is_empty())?;
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut fields = Vec::new();
    let mut rest = &body[find(body, delimiter)? + delimiter.len()..];
    loop {
        // After a delimiter: `--` ends the body, otherwise a line break and the part's headers.
        if rest.starts_with(b"--") {
            return Some(fields);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let header_end = find(rest, b"\r\n\r\n")?;
        let headers = std::str::from_utf8(&rest[..header_end]).ok()?;
        let content = &rest[header_end + 4..];
        let end = find(content, &[b"\r\n", delimiter].concat())?;
        let name = headers.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            if !n.trim().eq_ignore_ascii_case("content-disposition") {
                return None;
            }
            v.split(';').map(str::trim).find_map(|p| p.strip_prefix("name=")).map(|n| n.trim_matches('"').to_owned())
        })?;
        fields.push((name, content[..end].to_vec()));
        rest = &content[end + 2 + delimiter.len()..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_any_bytes() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"attributes\"\r\n\r\n{\"name\":\"a\"}\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\nContent-Type: application/octet-stream\r\n\r\n\r\n--Xy\x00\xff\r\n--XyZ--\r\n";
        let fields = parse("multipart/form-data; boundary=XyZ", body).unwrap();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0], ("attributes".to_owned(), b"{\"name\":\"a\"}".to_vec()));
        assert_eq!(fields[1], ("file".to_owned(), b"\r\n--Xy\x00\xff".to_vec()));
        assert_eq!(parse("multipart/form-data", body), None);
        assert_eq!(parse("multipart/form-data; boundary=other", body), None);
    }
}
