//! Development setups: the enclave configuration the demo and the
//! end-to-end tests give a sim enclave. Never a production configuration:
//! it selects the INSECURE simulated TEE and the echo test engine.

use cloister_policy::identity::DevIdp;

/// The audience development tokens carry.
pub const DEV_AUDIENCE: &str = "cloister";

/// `enclave.toml` for a sim enclave with the echo engine that trusts `idp`.
pub fn sim_enclave_toml(idp: &DevIdp) -> Result<String, toml::ser::Error> {
    sim_enclave_toml_with_engine(idp, "test-echo")
}

/// `enclave.toml` for a sim enclave with `engine` that trusts `idp`.
pub fn sim_enclave_toml_with_engine(
    idp: &DevIdp,
    engine: &str,
) -> Result<String, toml::ser::Error> {
    let mut issuer = toml::Table::new();
    issuer.insert("issuer".into(), idp.issuer().into());
    issuer.insert("jwks".into(), idp.jwks().into());
    let mut identity = toml::Table::new();
    identity.insert("audience".into(), DEV_AUDIENCE.into());
    identity.insert("issuers".into(), toml::Value::Array(vec![issuer.into()]));
    let mut root = toml::Table::new();
    root.insert("tee".into(), "sim".into());
    root.insert("engine".into(), engine.into());
    root.insert("identity".into(), identity.into());
    Ok(format!(
        "# Cloister enclave configuration for development: INSECURE sim TEE, engine {engine}.\n{}",
        toml::to_string(&root)?
    ))
}

/// The standard policy bundle `scripts/build-policies` builds:
/// `$CLOISTER_POLICY_BUNDLE`, else `policy-bundles/standard` in the target
/// directory above `bin_dir` (where the workspace binaries are).
pub fn standard_policy_bundle(bin_dir: &std::path::Path) -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("CLOISTER_POLICY_BUNDLE") {
        return dir.into();
    }
    bin_dir
        .parent()
        .unwrap_or(bin_dir)
        .join("policy-bundles")
        .join("standard")
}

/// Copy the bundle in `bundle_dir` into `image/policy` (checking every
/// module against its pin) and return it.
pub fn install_policy_bundle(
    bundle_dir: &std::path::Path,
    image: &std::path::Path,
) -> anyhow::Result<cloister_policy::Bundle> {
    use anyhow::Context as _;
    let bundle = cloister_policy::Bundle::read(bundle_dir).with_context(|| {
        format!(
            "no usable policy bundle at {} (scripts/build-policies builds the standard one)",
            bundle_dir.display()
        )
    })?;
    bundle.write(&image.join("policy"))?;
    Ok(bundle)
}

/// The `[policy]` table of `enclave.toml` pinning `digest` (hex) for the
/// bundle [`install_policy_bundle`] put in the image.
pub fn policy_table(digest: &str) -> String {
    format!("\n[policy]\nbundle = \"policy\"\ndigest = \"{digest}\"\n")
}

/// The `[audit]` table of `enclave.toml` sealing records to the auditor key
/// `auditor_public` (hex), keeping prompt and answer text when `keep_text`.
pub fn audit_table(auditor_public: &str, keep_text: bool) -> String {
    format!("\n[audit]\nauditor_key = \"{auditor_public}\"\nkeep_text = {keep_text}\n")
}
