//! Presigned requests: URLs that anyone holding them may send until they expire, without the
//! secret (V1 `Expires` or V4 `x-oss-expires`), and sending one as a browser would.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::HeaderMap;

use crate::client::{Client, check_part_number, service_error, unix, validate_bucket, validate_key};
use crate::config::SignatureVersion;
use crate::error::{Error, InvalidInput};
use crate::signing::{SignableRequest, v1, v4};
use crate::types::PresignedRequest;

impl Client {
    /// A presigned request that anyone holding the URL may send until it expires, without the
    /// secret: V1 (`Expires`) or V4 (`x-oss-expires`, at most 7 days) as configured. `headers`
    /// (such as `Content-MD5` or `Content-Type`) are signed and must be sent as given. The
    /// signing time is the local clock plus [`Client::clock_offset`]: a client whose clock is
    /// skewed presigns valid URLs once it has learned the offset from one refused call.
    pub fn presign(
        &self,
        method: &str,
        bucket: &str,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        expires_in: Duration,
    ) -> Result<PresignedRequest, Error> {
        self.presign_at(method, bucket, key, query, headers, expires_in, self.now())
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn presign_at(
        &self,
        method: &str,
        bucket: &str,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        expires_in: Duration,
        now: SystemTime,
    ) -> Result<PresignedRequest, Error> {
        validate_bucket(bucket)?;
        validate_key(key)?;
        let c = self.config();
        let mut req = SignableRequest::new(method, Some(bucket), Some(key));
        req.query = query.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
        req.headers = headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
        let added = match c.signature_version {
            SignatureVersion::V1 => v1::presign(&c.credentials, &req, unix(now) + expires_in.as_secs() as i64),
            SignatureVersion::V4 => {
                if expires_in.as_secs() > v4::MAX_EXPIRES_SECS {
                    return Err(InvalidInput::Config("V4 presigned URLs last at most 7 days (604800 s)".into()).into());
                }
                let region = c.region.as_deref().unwrap_or_default();
                v4::presign(&c.credentials, &req, region, &v4::format_datetime(unix(now)), expires_in.as_secs(), &[])?
            }
        };
        let mut all = req.query.clone();
        all.extend(added);
        let url = self.url(Some(bucket), Some(key), &all)?;
        Ok(PresignedRequest {
            method: req.method,
            url: upload_core::Secret::new(url.to_string()),
            headers: req.headers,
            expires_in,
        })
    }

    /// A presigned UploadPart for a browser or another process: it sends the part's bytes to the
    /// URL with the returned headers; the holder of the secret then completes the upload.
    pub fn presign_upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        content_md5: Option<&str>,
        expires_in: Duration,
    ) -> Result<PresignedRequest, Error> {
        check_part_number(part_number)?;
        let number = part_number.to_string();
        let query = [("partNumber", number.as_str()), ("uploadId", upload_id)];
        let headers: Vec<(&str, &str)> = content_md5.map(|m| ("Content-MD5", m)).into_iter().collect();
        self.presign("PUT", bucket, key, &query, &headers, expires_in)
    }

    /// Sends a presigned request (as a browser would) with `body`: a test aid and an example.
    pub async fn send_presigned(&self, presigned: &PresignedRequest, body: Bytes) -> Result<HeaderMap, Error> {
        let method = Method::from_bytes(presigned.method.as_bytes())
            .map_err(|e| InvalidInput::Config(format!("method {}: {e}", presigned.method)))?;
        let url = reqwest::Url::parse(presigned.url.expose())
            .map_err(|e| InvalidInput::Config(format!("presigned URL: {e}")))?;
        let mut request = self.http().request(method.clone(), url);
        for (n, v) in &presigned.headers {
            request = request.header(n.as_str(), v.as_str());
        }
        let response = request.body(body).send().await.map_err(Error::transport)?;
        if response.status().is_success() {
            return Ok(response.headers().clone());
        }
        Err(service_error(response, method == Method::HEAD, "presigned request").await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::signing::Credentials;

    #[test]
    fn presigned_urls_carry_the_signature_and_hide_it_from_debug() {
        let config = Config::new("oss-cn-hangzhou.aliyuncs.com", Credentials::new("ak", "sk")).unwrap();
        let client = Client::new(config.clone()).unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1702781677);
        let p = client
            .presign_at(
                "PUT",
                "bkt",
                "k",
                &[("partNumber", "1"), ("uploadId", "U")],
                &[],
                Duration::from_secs(600),
                now,
            )
            .unwrap();
        assert!(p.url.expose().contains("x-oss-signature="), "{}", p.url.expose());
        assert!(p.url.expose().contains("x-oss-credential=ak%2F20231217%2Fcn-hangzhou%2Foss%2Faliyun_v4_request"));
        assert!(!format!("{p:?}").contains("x-oss-signature"));
        let v1 = Client::new(config.with_signature_version(SignatureVersion::V1)).unwrap();
        let p = v1.presign_at("GET", "bkt", "k", &[], &[], Duration::from_secs(60), now).unwrap();
        assert!(p.url.expose().contains(&format!("Expires={}", 1702781677 + 60)));
        assert!(
            client
                .presign("GET", "bkt", "k", &[], &[], Duration::from_secs(604_801))
                .unwrap_err()
                .to_string()
                .contains("7 days")
        );
    }
}
