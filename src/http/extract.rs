//! Extractors that turn a raw request into validated inputs, answering a
//! clear 4xx (never a 500) when they cannot: JSON bodies, list queries
//! (`offset`, `limit`, `sorts`) and ids in paths.

use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn, ParameterStyle};
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::{RefOr, Required};

use super::error::ApiError;
use crate::http::request::FieldError;
use crate::store::{PageRequest, Sort, SortColumn};

/// The largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 1000;
/// The most field errors one answer lists: enough to fix a request, and no
/// way to make a small request produce a huge answer.
pub const MAX_FIELD_ERRORS: usize = 10;

/// A JSON body deserialized into `T`. A wrong content type is a 415, a body
/// over [`MAX_BODY_BYTES`] a 413, and malformed JSON or a wrongly typed field
/// a 400 whose `fieldErrors` names the field.
pub struct ValidJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ValidJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(
            request,
            state,
            is_json,
            "JSON, sent with Content-Type: application/json",
        )
        .await?;
        parse_json(&bytes).map(ValidJson)
    }
}

/// Like [`ValidJson`], but an empty body (with or without a content type)
/// stands for `T::default()`: for endpoints whose every field is optional.
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let expected = "JSON, sent with Content-Type: application/json";
        let typed = request.headers().contains_key(header::CONTENT_TYPE);
        // An untyped body is read only to see whether it is empty.
        let accepts: fn(&str) -> bool = if typed { is_json } else { |_| true };
        let bytes = read_body(request, state, accepts, expected).await?;
        if bytes.is_empty() {
            Ok(OptionalJson(T::default()))
        } else if typed {
            parse_json(&bytes).map(OptionalJson)
        } else {
            Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("the request body must be {expected}"),
            ))
        }
    }
}

/// An `application/x-www-form-urlencoded` body deserialized into `T`, with
/// the same 415/413/400 answers as [`ValidJson`].
pub struct ValidForm<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ValidForm<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(
            request,
            state,
            |mime| mime == "application/x-www-form-urlencoded",
            "a form, sent with Content-Type: application/x-www-form-urlencoded",
        )
        .await?;
        serde_urlencoded::from_bytes(&bytes)
            .map(ValidForm)
            .map_err(|e| {
                ApiError::bad_request(format!("the request body is not a valid form: {e}"))
            })
    }
}

/// The body of a request whose media type `accepts`, within the size limit.
async fn read_body<S: Send + Sync>(
    request: Request,
    state: &S,
    accepts: fn(&str) -> bool,
    expected: &str,
) -> Result<Bytes, ApiError> {
    let mime = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if !accepts(mime.as_deref().unwrap_or("")) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("the request body must be {expected}"),
        ));
    }
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
                )
            } else if timed_out(&rejection) {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive in time",
                )
            } else {
                ApiError::bad_request(format!(
                    "could not read the request body: {}",
                    rejection.body_text()
                ))
            }
        })
}

/// Whether reading the body failed because it stalled (see `transport`).
fn timed_out(rejection: &dyn std::error::Error) -> bool {
    let mut cause = rejection.source();
    while let Some(err) = cause {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = err.source();
    }
    false
}

fn is_json(mime: &str) -> bool {
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let malformed = |e: &dyn std::fmt::Display| {
        ApiError::bad_request(format!("the request body is not a valid JSON object: {e}"))
    };
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let field = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() || field == "." {
            malformed(&inner)
        } else {
            ApiError::invalid(vec![FieldError::new(
                &field,
                "invalid_type",
                format!("{field}: {inner}"),
            )])
        }
    })?;
    // Trailing garbage after the JSON value is malformed input too.
    deserializer.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

/// A resource whose lists can be sorted: the wire field names it accepts in
/// `sorts` and the column each one orders by.
pub trait Sortable {
    const SORT_FIELDS: &'static [(&'static str, SortColumn)];
}

/// `offset`, `limit` and `sorts` of a list request, checked against the
/// resource's sort fields. Other query parameters are left to the handler.
pub struct ListQuery<R> {
    pub page: PageRequest,
    _resource: PhantomData<R>,
}

impl<S: Send + Sync, R: Sortable> FromRequestParts<S> for ListQuery<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
                .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
        parse_list_query::<R>(&pairs).map(|page| ListQuery {
            page,
            _resource: PhantomData,
        })
    }
}

/// The document's parameters for what [`ListQuery`] parses: the bounds and
/// the `sorts` values come from the same constants and fields.
impl<R: Sortable> utoipa::IntoParams for ListQuery<R> {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let integer = |minimum: i64, maximum: Option<i64>, default: i64| {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(minimum))
                .maximum(maximum)
                .default(Some(default.into()))
        };
        let sorts: Vec<String> = R::SORT_FIELDS
            .iter()
            .flat_map(|(field, _)| [format!("{field}:asc"), format!("{field}:desc")])
            .collect();
        let parameter = |name: &str, description: &str, schema: RefOr<Schema>| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(schema))
        };
        vec![
            parameter("offset", "Results to skip", integer(0, None, 0).into()).build(),
            parameter(
                "limit",
                "Results per page",
                integer(0, Some(MAX_LIMIT), DEFAULT_LIMIT).into(),
            )
            .build(),
            parameter(
                "sorts",
                "`<field>:asc` or `<field>:desc`, repeated or comma-separated; \
                 earlier entries take precedence, a field named again is ignored",
                ArrayBuilder::new()
                    .items(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .enum_values(Some(sorts)),
                    )
                    .into(),
            )
            .style(Some(ParameterStyle::Form))
            .explode(Some(true))
            .build(),
        ]
    }
}

fn parse_list_query<R: Sortable>(pairs: &[(String, String)]) -> Result<PageRequest, ApiError> {
    let mut errors = Vec::new();
    let mut page = PageRequest {
        offset: 0,
        limit: DEFAULT_LIMIT,
        sorts: Vec::new(),
    };
    for (key, value) in pairs {
        match key.as_str() {
            "offset" => match value.parse::<i64>() {
                Ok(n) if n >= 0 => page.offset = n,
                _ => errors.push(FieldError::new(
                    "offset",
                    "invalid",
                    format!("offset must be an integer >= 0; got {value:?}"),
                )),
            },
            "limit" => match value.parse::<i64>() {
                Ok(n) if (0..=MAX_LIMIT).contains(&n) => page.limit = n,
                _ => errors.push(FieldError::new(
                    "limit",
                    "invalid",
                    format!("limit must be an integer from 0 to {MAX_LIMIT}; got {value:?}"),
                )),
            },
            "sorts" => {
                for item in value.split(',') {
                    if errors.len() >= MAX_FIELD_ERRORS {
                        break;
                    }
                    match parse_sort::<R>(item) {
                        // Repeating a field is valid in Astro's schema: the
                        // first occurrence decides, later ones are ignored.
                        Some(sort) if page.sorts.iter().any(|s| s.column == sort.column) => {}
                        Some(sort) => page.sorts.push(sort),
                        None if item.is_empty() => errors.push(FieldError::new(
                            "sorts",
                            "invalid",
                            "an empty sort is not a sort: use <field>:asc or <field>:desc",
                        )),
                        None => errors.push(FieldError::new(
                            "sorts",
                            "invalid",
                            format!(
                                "invalid sort {item:?}: use <field>:asc or <field>:desc with field one of {}",
                                R::SORT_FIELDS.iter().map(|(f, _)| *f).collect::<Vec<_>>().join(", ")
                            ),
                        )),
                    }
                }
            }
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(page)
    } else {
        errors.truncate(MAX_FIELD_ERRORS);
        Err(ApiError::invalid(errors))
    }
}

fn parse_sort<R: Sortable>(item: &str) -> Option<Sort> {
    let (field, direction) = item.split_once(':')?;
    let descending = match direction {
        "asc" => false,
        "desc" => true,
        _ => return None,
    };
    let column = R::SORT_FIELDS
        .iter()
        .find(|(name, _)| *name == field)
        .map(|(_, column)| *column)?;
    Some(Sort { column, descending })
}

/// Path parameters, with a malformed path a 400 in the envelope.
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(PathParams(value))
    }
}

/// Every value of a list filter in a query string (`names=a&names=b` or
/// `names=a,b`, as Astro's clients send them), in order; an empty item is
/// a 400 naming the parameter.
pub fn list_values(query: Option<&str>, key: &str) -> Result<Vec<String>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| ApiError::bad_request("invalid query string"))?;
    let mut values = Vec::new();
    for (_, value) in pairs.iter().filter(|(k, _)| k == key) {
        for item in value.split(',') {
            if item.trim().is_empty() {
                return Err(ApiError::invalid(vec![FieldError::new(
                    key,
                    "invalid",
                    format!("{key} must not hold an empty value"),
                )]));
            }
            if values.len() >= MAX_LIMIT as usize {
                return Err(ApiError::invalid(vec![FieldError::new(
                    key,
                    "invalid",
                    format!("{key} holds more than {MAX_LIMIT} values"),
                )]));
            }
            values.push(item.trim().to_string());
        }
    }
    Ok(values)
}

/// Query parameters deserialized into `T`, with a bad query a 400 in the envelope.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(QueryParams(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Thing;
    impl Sortable for Thing {
        const SORT_FIELDS: &'static [(&'static str, SortColumn)] = &[
            ("name", SortColumn::Name),
            ("createdAt", SortColumn::CreatedAt),
        ];
    }

    fn parse(q: &str) -> Result<PageRequest, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).unwrap();
        parse_list_query::<Thing>(&pairs)
    }

    #[test]
    fn defaults() {
        let page = parse("").unwrap();
        assert_eq!((page.offset, page.limit, page.sorts.len()), (0, 20, 0));
    }

    #[test]
    fn repeated_and_comma_separated_sorts() {
        let page = parse("sorts=name%3Aasc&sorts=createdAt%3Adesc").unwrap();
        assert_eq!(page.sorts.len(), 2);
        assert!(page.sorts[1].descending);
        let page = parse("sorts=name:desc,createdAt:asc").unwrap();
        assert_eq!(
            page.sorts[0],
            Sort {
                column: SortColumn::Name,
                descending: true
            }
        );
    }

    #[test]
    fn each_field_sorts_once_and_errors_are_bounded() {
        // A repeated field is valid; the first occurrence wins.
        let page = parse("sorts=name:asc,createdAt:desc&sorts=name:desc").unwrap();
        assert_eq!(page.sorts.len(), 2);
        assert!(!page.sorts[0].descending, "name:asc, the first, decides");
        for empty in ["sorts=", "sorts=name:asc,", "sorts=,name:asc"] {
            let err = parse(empty).unwrap_err();
            assert_eq!(err.field_errors[0].field, "sorts", "{empty}");
        }
        let flood = format!("sorts={}", vec!["bogus:asc"; 5000].join(","));
        let err = parse(&flood).unwrap_err();
        assert_eq!(err.field_errors.len(), MAX_FIELD_ERRORS);
        let flood = vec!["limit=x"; 3000].join("&");
        assert_eq!(
            parse(&flood).unwrap_err().field_errors.len(),
            MAX_FIELD_ERRORS
        );
    }

    #[test]
    fn bad_values_name_the_field() {
        for q in [
            "limit=1001",
            "limit=-1",
            "limit=x",
            "offset=-1",
            "offset=1.5",
            "sorts=bogus:asc",
            "sorts=name",
            "sorts=name:up",
        ] {
            let err = parse(q).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{q}");
            assert_eq!(err.field_errors.len(), 1, "{q}");
        }
        let err = parse("sorts=bogus:asc").unwrap_err();
        assert!(err.message.contains("bogus"), "{}", err.message);
    }
}
