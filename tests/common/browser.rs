//! A browser-like client of the control page for the HTTP-level page tests.

use reqwest::redirect::Policy;

/// A browser-like client: keeps no cookies of its own (the test passes the session), follows no
/// redirects (the test reads them).
pub struct Browser {
    pub http: reqwest::Client,
    pub url: String,
    pub cookie: String,
}

impl Browser {
    pub async fn login(url: &str, username: &str, password: &str) -> Browser {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap();
        let r = http
            .post(format!("{url}/login"))
            .header("sec-fetch-site", "same-origin")
            .form(&[
                ("username", username),
                ("password", password),
                ("next", "/machines"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "login as {username}");
        assert_eq!(r.headers()["location"], "/machines");
        let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set.contains(attribute), "{set}");
        }
        let cookie = set.split(';').next().unwrap().to_string();
        Browser {
            http,
            url: url.to_string(),
            cookie,
        }
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'"), "{csp}");
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The CSRF token the pages of this session carry.
    pub async fn csrf(&self) -> String {
        let (_, html) = self.get("/machines").await;
        let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
        html[at..at + 32].to_string()
    }

    pub async fn post(
        &self,
        path: &str,
        site: &str,
        form: &[(&str, &str)],
    ) -> (u16, Option<String>, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .header("cookie", &self.cookie)
            .header("sec-fetch-site", site)
            .form(form)
            .send()
            .await
            .unwrap();
        let location = r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string());
        (r.status().as_u16(), location, r.text().await.unwrap())
    }
}

impl Browser {
    /// Finishes the first-boot setup with no network boot (the fixture's daemons name no boot
    /// interface, so `/` leads an admin to the setup until then).
    pub async fn finish_setup_without_network_boot(&self) {
        let csrf = self.csrf().await;
        let (s, _, body) = self
            .post(
                "/setup/boot",
                "same-origin",
                &[("csrf", &csrf), ("mode", "off"), ("interface", "")],
            )
            .await;
        assert_eq!(s, 200, "{body}");
        let (s, location, body) = self
            .post("/setup/finish", "same-origin", &[("csrf", &csrf)])
            .await;
        assert_eq!((s, location.as_deref()), (303, Some("/")), "{body}");
    }
}
