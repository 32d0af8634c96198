//! jwtgate: a TLS-terminating reverse proxy that verifies the JWT on every
//! request and forwards only verified identity to its upstreams.
//!
//! A request's path: [`server`] (TLS, HTTP/1.1 and HTTP/2) → [`gateway`]
//! (route → authorize → rewrite headers → forward) → [`upstream`].

pub mod admin;
pub mod auth;
pub mod cache;
pub mod config;
pub mod demo;
pub mod explain;
pub mod gateway;
pub mod headers;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod metrics;
pub mod reload;
pub mod revocation;
pub mod routes;
pub mod rules;
pub mod server;
pub mod tls;
pub mod token;
pub mod upstream;
