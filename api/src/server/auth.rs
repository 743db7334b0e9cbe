//! [`Agent`]: the extractor that turns `Authorization: Bearer <key>` into the agent the key
//! names. Every `/v1/compute` handler takes one, so nothing is reachable without a key and
//! everything a handler touches is that agent's.

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};

use super::error::ApiError;
use super::state::AppState;
use crate::keys;

/// The authenticated agent of a request.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: fsd::AgentId,
    pub name: String,
}

impl FromRequestParts<AppState> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = bearer_key(parts)?;
        // A string that cannot be a key is refused without a look-up.
        if keys::id_of(key).is_none() {
            return Err(ApiError::unauthorized("the API key is malformed"));
        }
        let hash = keys::hash(key);
        match state
            .blocking(move |store| store.agent_for_key(hash))
            .await?
        {
            Some(info) => Ok(Agent {
                id: info.id,
                name: info.name,
            }),
            None => Err(ApiError::unauthorized("unknown or revoked API key")),
        }
    }
}

fn bearer_key(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <key>` header"))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not valid text"))?;
    match value.split_once(' ') {
        Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") && !key.trim().is_empty() => {
            Ok(key.trim())
        }
        _ => Err(ApiError::unauthorized(
            "the Authorization header must be `Bearer <key>`",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(authorization: Option<&str>) -> Parts {
        let mut builder = Request::builder();
        if let Some(value) = authorization {
            builder = builder.header(header::AUTHORIZATION, value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn reads_bearer_keys() {
        assert_eq!(bearer_key(&parts(Some("Bearer abx_k"))).unwrap(), "abx_k");
        assert_eq!(bearer_key(&parts(Some("bearer  abx_k "))).unwrap(), "abx_k");
        for bad in [
            None,
            Some("Basic abc"),
            Some("Bearer"),
            Some("Bearer   "),
            Some("abx_k"),
        ] {
            let error = bearer_key(&parts(bad)).unwrap_err();
            assert_eq!(error.code, "unauthorized", "{bad:?}");
        }
    }
}
