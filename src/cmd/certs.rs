//! `volsync-dr certs`: a CA and a serving certificate for the webhook Service (rcgen), written
//! as PEM files; prints the CA bundle for the MutatingWebhookConfiguration's `caBundle`.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use crate::cli::CertsArgs;
use crate::error::{Error, Result};

/// The DNS names the API server uses to reach a Service.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

pub struct Generated {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn generate(names: Vec<String>, days: u32) -> Result<Generated> {
    let err = |e: rcgen::Error| Error::Output(format!("cannot generate certificates: {e}"));
    let now = std::time::SystemTime::now();
    let until = now + std::time::Duration::from_secs(u64::from(days) * 86_400);
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(DnType::CommonName, "volsync-dr webhook CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now.into();
    ca.not_after = until.into();
    let ca_key = KeyPair::generate().map_err(err)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::from_params(&ca, &ca_key);

    let mut leaf = CertificateParams::new(names.clone()).map_err(err)?;
    leaf.distinguished_name
        .push(DnType::CommonName, names.first().cloned().unwrap_or_default());
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = now.into();
    leaf.not_after = until.into();
    let key = KeyPair::generate().map_err(err)?;
    let cert = leaf.signed_by(&key, &issuer).map_err(err)?;
    Ok(Generated {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn write(path: &Path, content: &str, private: bool) -> Result<()> {
    let fail = |e: std::io::Error| Error::Output(format!("{}: {e}", path.display()));
    std::fs::write(path, content).map_err(fail)?;
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    }
    Ok(())
}

pub fn run(args: &CertsArgs) -> Result<()> {
    if args.days == 0 {
        return Err(Error::Flag("--days 0: accepted: at least 1".into()));
    }
    let mut names = service_names(&args.service, &args.namespace);
    names.extend(args.extra_names.iter().cloned());
    let generated = generate(names, args.days)?;
    std::fs::create_dir_all(&args.out_dir).map_err(|e| Error::Output(format!("{}: {e}", args.out_dir.display())))?;
    write(&args.out_dir.join("ca.crt"), &generated.ca_pem, false)?;
    write(&args.out_dir.join("tls.crt"), &generated.cert_pem, false)?;
    write(&args.out_dir.join("tls.key"), &generated.key_pem, true)?;
    use base64::Engine as _;
    println!(
        "{}",
        base64::engine::general_purpose::STANDARD.encode(&generated.ca_pem)
    );
    eprintln!(
        "wrote {dir}/ca.crt, {dir}/tls.crt, {dir}/tls.key; the line above is the caBundle for the MutatingWebhookConfiguration",
        dir = args.out_dir.display()
    );
    Ok(())
}
