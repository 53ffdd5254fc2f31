//! Development setups: the enclave configuration the demo and the
//! end-to-end tests give a sim enclave. Never a production configuration:
//! it selects the INSECURE simulated TEE and the echo test engine.

use cloister_policy::identity::DevIdp;

/// The audience development tokens carry.
pub const DEV_AUDIENCE: &str = "cloister";

/// `enclave.toml` for a sim enclave with the echo engine that trusts `idp`.
pub fn sim_enclave_toml(idp: &DevIdp) -> Result<String, toml::ser::Error> {
    let mut issuer = toml::Table::new();
    issuer.insert("issuer".into(), idp.issuer().into());
    issuer.insert("jwks".into(), idp.jwks().into());
    let mut identity = toml::Table::new();
    identity.insert("audience".into(), DEV_AUDIENCE.into());
    identity.insert("issuers".into(), toml::Value::Array(vec![issuer.into()]));
    let mut root = toml::Table::new();
    root.insert("tee".into(), "sim".into());
    root.insert("engine".into(), "test-echo".into());
    root.insert("identity".into(), identity.into());
    Ok(format!(
        "# Cloister enclave configuration for development: INSECURE sim TEE, echo test engine.\n{}",
        toml::to_string(&root)?
    ))
}
