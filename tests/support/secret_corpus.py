"""The secret corpus: one realistic sample per secret format, and benign look-alikes.

Every SECRETS entry must be redacted wherever text is stored (content, tags, source, model
text, captured observations); every BENIGN text must come through redaction unchanged. The
secret values are generated from a seeded RNG in the format's shape, so no real-looking
credential literal sits in the repository (and secret scanners stay quiet).
"""

from __future__ import annotations

import base64
import random
import string
from dataclasses import dataclass

HEX = "0123456789abcdef"
UPPER_HEX = "0123456789ABCDEF"
ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"
B64 = ALNUM + "+/"
UPPER_ALNUM = string.ascii_uppercase + string.digits
LOWER_ALNUM = string.ascii_lowercase + string.digits
BECH32 = "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"


def chars(alphabet: str, n: int, seed: str) -> str:
    """``n`` characters of ``alphabet``, the same for the same seed, with a digit and a letter
    of both cases when the alphabet has them (as a real random token almost always does)."""
    rng = random.Random(seed)
    while True:
        value = "".join(rng.choice(alphabet) for _ in range(n))
        wanted = [set(group) & set(alphabet)
                  for group in (string.digits, string.ascii_lowercase, string.ascii_uppercase)]
        if n < 8 or all(not group or group & set(value) for group in wanted):
            return value


@dataclass(frozen=True)
class Secret:
    name: str  # the format
    kind: str  # the kind redaction reports
    secret: str  # what must not survive
    text: str  # the secret in a realistic sentence or snippet

    @property
    def fragment(self) -> str:
        """A piece of a long secret that must not survive either (a partial leak)."""
        middle = len(self.secret) // 2
        return self.secret[middle - 8:middle + 8] if len(self.secret) >= 24 else self.secret


def _s(name: str, kind: str, secret: str, template: str = "{s}") -> Secret:
    return Secret(name, kind, secret, template.format(s=secret))


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


_PEM_BODY = "\n".join(chars(B64, 64, f"pem{i}") for i in range(4))


SECRETS: tuple[Secret, ...] = (
    # --- this product and AI providers ---
    _s("team_memory_api_key", "team_memory_key", "tm_" + chars(URLSAFE, 32, "tm"),
       "the CI key for team memory is {s}, do not share"),
    _s("anthropic_api_key", "anthropic_key", "sk-ant-" + "api03-" + chars(URLSAFE, 93, "ant"),
       "ANTHROPIC_KEY is {s} for the eval job"),
    _s("anthropic_admin_key", "anthropic_key", "sk-ant-" + "admin01-" + chars(URLSAFE, 80, "ad"),
       "admin: {s}"),
    _s("openai_legacy_key", "openai_key", "sk-" + chars(ALNUM, 20, "o1") + "T3Blbk" + "FJ"
       + chars(ALNUM, 20, "o2"), "client = OpenAI(api_key='{s}')"),
    _s("openai_project_key", "openai_key", "sk-" + "proj-" + chars(URLSAFE, 64, "op"),
       "the openai project key {s} belongs to the eval team"),
    _s("huggingface_token", "huggingface_token", "hf_" + chars(ALNUM, 34, "hf"),
       "huggingface-cli login --token {s}"),
    _s("huggingface_org_token", "huggingface_token", "api_org_" + chars(ALNUM, 34, "hforg"),
       "org token {s}"),
    _s("replicate_token", "replicate_token", "r8_" + chars(ALNUM, 37, "r8"),
       "replicate uses {s}"),
    _s("groq_key", "groq_key", "gsk_" + chars(ALNUM, 52, "gsk"), "groq key {s}"),
    _s("perplexity_key", "perplexity_key", "pplx-" + chars(ALNUM, 48, "pplx"),
       "perplexity: {s}"),
    _s("xai_key", "xai_key", "xai-" + chars(ALNUM, 80, "xai"), "grok via {s}"),
    # --- cloud ---
    _s("aws_access_key_id", "aws_access_key", "AKIA" + chars(UPPER_ALNUM, 16, "akia"),
       "aws key id {s} in us-east-1"),
    _s("aws_secret_access_key", "aws_secret_key", chars(ALNUM + "/+", 40, "awss"),
       "aws_secret_access_key = {s}"),
    _s("aws_session_token", "aws_session_token", "IQoJb3JpZ2luX2Vj" + chars(B64, 300, "sts"),
       "the STS session is {s}"),
    _s("google_api_key", "google_api_key", "AIza" + chars(URLSAFE, 35, "aiza"),
       "maps key {s} for the frontend"),
    _s("google_oauth_client_secret", "google_oauth_secret", "GOCSPX-" + chars(URLSAFE, 28, "gc"),
       "oauth client secret {s}"),
    _s("google_oauth_access_token", "google_oauth_token", "ya29." + chars(URLSAFE, 120, "ya"),
       "curl -H 'X-Goog-Token: {s}'"),
    _s("google_oauth_refresh_token", "google_oauth_token", "1//0" + chars(URLSAFE, 60, "1//"),
       "refresh with {s}"),
    _s("gcp_service_account_key", "private_key",
       "-----BEGIN PRIVATE KEY-----\\n" + _PEM_BODY.replace("\n", "\\n")
       + "\\n-----END PRIVATE KEY-----\\n",
       '{{"type": "service_account", "private_key": "{s}", "client_email": "ci@p.iam"}}'),
    _s("azure_storage_account_key", "env_assignment", chars(B64, 86, "az") + "==",
       "DefaultEndpointsProtocol=https;AccountName=acmeprod;AccountKey={s};"
       "EndpointSuffix=core.windows.net"),
    _s("azure_sas_signature", "azure_sas", chars(ALNUM, 30, "sas") + "%2B" + chars(ALNUM, 10, "s2")
       + "%3D", "https://acme.blob.core.windows.net/c/f.zip?sv=2022-11-02&sp=r"
       "&se=2030-01-01T00:00:00Z&sig={s}"),
    _s("azure_ad_client_secret", "azure_client_secret",
       chars(ALNUM, 3, "azc") + "8Q~" + chars(ALNUM + "_~.-", 34, "azc2"),
       "AZURE_CLIENT_SECRET {s}"),
    _s("alibaba_access_key", "alibaba_key", "LTAI" + chars(ALNUM, 20, "ltai"),
       "aliyun access key {s}"),
    _s("tencent_secret_id", "tencent_key", "AKID" + chars(ALNUM, 32, "akid"),
       "tencent cloud {s}"),
    _s("digitalocean_pat", "digitalocean_token", "dop_v1_" + chars(HEX, 64, "dop"),
       "doctl auth init -t {s}"),
    _s("digitalocean_oauth", "digitalocean_token", "doo_v1_" + chars(HEX, 64, "doo"),
       "droplet token {s}"),
    _s("heroku_api_key", "heroku_key", "HRKU-" + "AA" + chars(URLSAFE, 58, "hrku"),
       "heroku authorizations: {s}"),
    _s("databricks_token", "databricks_token", "dapi" + chars(HEX, 32, "dapi"),
       "databricks workspace token {s}"),
    _s("supabase_token", "supabase_token", "sbp_" + chars(HEX, 40, "sbp"), "supabase {s}"),
    _s("planetscale_password", "planetscale_token", "pscale_pw_" + chars(URLSAFE, 43, "ps"),
       "planetscale branch password {s}"),
    _s("vault_token", "vault_token", "hvs." + chars(URLSAFE, 90, "hvs"),
       "VAULT_TOKEN is {s} on the bastion"),
    _s("terraform_cloud_token", "terraform_token",
       chars(ALNUM, 14, "tf") + ".atlasv1." + chars(URLSAFE, 67, "tf2"),
       'credentials "app.terraform.io" {{ token = "{s}" }}'),
    _s("pulumi_token", "pulumi_token", "pul-" + chars(HEX, 40, "pul"), "pulumi login {s}"),
    _s("doppler_token", "doppler_token", "dp.pt." + chars(ALNUM, 43, "dp"), "doppler: {s}"),
    _s("dynatrace_token", "dynatrace_token",
       "dt0c01." + chars(UPPER_ALNUM, 24, "dt") + "." + chars(UPPER_ALNUM, 64, "dt2"),
       "dynatrace api {s}"),
    # --- code hosting, CI, package registries ---
    _s("github_classic_pat", "github_token", "ghp_" + chars(ALNUM, 36, "ghp"),
       "git clone https://github.com/acme/api with {s}"),
    _s("github_oauth_token", "github_token", "gho_" + chars(ALNUM, 36, "gho"), "gh token {s}"),
    _s("github_fine_grained_pat", "github_token",
       "github_pat_" + chars(ALNUM, 22, "gfp") + "_" + chars(ALNUM, 59, "gfp2"),
       "fine-grained {s}"),
    _s("gitlab_pat", "gitlab_token", "glpat-" + chars(URLSAFE, 20, "glpat"), "gitlab {s}"),
    _s("gitlab_runner_token", "gitlab_token", "glrt-" + chars(URLSAFE, 20, "glrt"),
       "gitlab-runner register --token {s}"),
    _s("bitbucket_app_password", "bitbucket_token", "ATBB" + chars(ALNUM, 32, "atbb"),
       "bitbucket {s}"),
    _s("atlassian_api_token", "atlassian_token", "ATATT3xFfGF0" + chars(URLSAFE, 170, "at"),
       "jira token {s}"),
    _s("npm_token", "npm_token", "npm_" + chars(ALNUM, 36, "npm"),
       "//registry.npmjs.org/:_authToken={s}"),
    _s("pypi_token", "pypi_token", "pypi-" + "AgEIcHlwaS5vcmc" + chars(URLSAFE, 150, "pypi"),
       "twine upload -u __token__ -p {s} dist/*"),
    _s("rubygems_key", "rubygems_token", "rubygems_" + chars(HEX, 48, "gem"),
       "GEM_HOST_API_KEY {s}"),
    _s("nuget_key", "nuget_key", "oy2" + chars(LOWER_ALNUM, 43, "oy2"),
       "dotnet nuget push -k {s}"),
    _s("docker_hub_pat", "docker_token", "dckr_pat_" + chars(URLSAFE, 27, "dckr"),
       "docker hub token {s}"),
    _s("docker_config_auth", "basic_auth", _b64("deploy:" + chars(ALNUM, 20, "dauth")),
       '{{"auths": {{"registry.acme.io": {{"auth": "{s}"}}}}}}'),
    _s("npmrc_basic_auth", "basic_auth", _b64("ci:" + chars(ALNUM, 18, "npma")),
       "_auth={s}"),
    _s("figma_token", "figma_token", "figd_" + chars(URLSAFE, 40, "figd"), "figma {s}"),
    _s("linear_key", "linear_key", "lin_api_" + chars(ALNUM, 40, "lin"), "linear {s}"),
    _s("notion_token", "notion_token", "ntn_" + chars(ALNUM, 46, "ntn"), "notion {s}"),
    _s("postman_key", "postman_key", "PMAK-" + chars(HEX, 24, "pm") + "-" + chars(HEX, 34, "pm2"),
       "postman {s}"),
    _s("sentry_user_token", "sentry_token", "sntryu_" + chars(HEX, 64, "sntry"),
       "SENTRY_AUTH {s}"),
    _s("grafana_cloud_token", "grafana_token", "glc_" + chars(B64, 80, "glc") + "==",
       "grafana cloud {s}"),
    _s("grafana_service_account", "grafana_token",
       "glsa_" + chars(ALNUM, 32, "glsa") + "_" + chars(HEX, 8, "glsa2"), "grafana sa {s}"),
    _s("new_relic_user_key", "new_relic_key", "NRAK-" + chars(UPPER_ALNUM, 27, "nrak"),
       "newrelic {s}"),
    # --- messaging, payments, SaaS ---
    _s("slack_bot_token", "slack_token", "xoxb-" + chars("0123456789", 12, "xb") + "-"
       + chars("0123456789", 13, "xb2") + "-" + chars(ALNUM, 24, "xb3"), "bot: {s}"),
    _s("slack_app_token", "slack_token", "xapp-1-A0" + chars(UPPER_ALNUM, 9, "xa") + "-"
       + chars("0123456789", 13, "xa2") + "-" + chars(HEX, 64, "xa3"), "socket mode {s}"),
    _s("slack_webhook", "slack_webhook", "T0" + chars(UPPER_ALNUM, 8, "sw") + "/B0"
       + chars(UPPER_ALNUM, 8, "sw2") + "/" + chars(ALNUM, 24, "sw3"),
       "alerts go to https://hooks.slack.com/services/{s}"),
    _s("discord_webhook", "discord_webhook", chars(URLSAFE, 68, "dw"),
       "https://discord.com/api/webhooks/112233445566778899/{s}"),
    _s("telegram_bot_token", "telegram_bot_token",
       chars("0123456789", 10, "tg") + ":AA" + chars(URLSAFE, 33, "tg2"), "bot father gave {s}"),
    _s("twilio_api_key", "twilio_key", "SK" + chars(HEX, 32, "sk"), "twilio key {s}"),
    _s("sendgrid_key", "sendgrid_key",
       "SG." + chars(URLSAFE, 22, "sg") + "." + chars(URLSAFE, 43, "sg2"),
       "SendGrid: {s}"),
    _s("mailgun_key", "mailgun_key", "key-" + chars(HEX, 32, "mg"), "mailgun {s}"),
    _s("mailchimp_key", "mailchimp_key", chars(HEX, 32, "mc") + "-us14", "mailchimp {s}"),
    _s("brevo_key", "brevo_key", "xkeysib-" + chars(HEX, 64, "br") + "-" + chars(ALNUM, 16, "b2"),
       "brevo {s}"),
    _s("stripe_secret_key", "stripe_key", "sk_" + "live_" + chars(ALNUM, 24, "stripe"),
       "billing uses {s}"),
    _s("stripe_restricted_key", "stripe_key", "rk_" + "live_" + chars(ALNUM, 24, "rk"),
       "restricted {s}"),
    _s("stripe_webhook_secret", "stripe_key", "whsec_" + chars(ALNUM, 32, "whsec"),
       "webhook signing {s}"),
    _s("square_access_token", "square_token", "EAAA" + chars(URLSAFE, 60, "sq"), "square {s}"),
    _s("shopify_admin_token", "shopify_token", "shpat_" + chars(HEX, 32, "shp"),
       "Shopify admin API: {s}"),
    _s("shopify_shared_secret", "shopify_token", "shpss_" + chars(HEX, 32, "shps"),
       "shopify app secret {s}"),
    _s("shippo_token", "shippo_token", "shippo_" + "live_" + chars(HEX, 40, "shippo"),
       "labels via {s}"),
    _s("dropbox_token", "dropbox_token", "sl." + chars(URLSAFE, 135, "dbx"), "dropbox {s}"),
    _s("mapbox_secret_token", "mapbox_token",
       "sk.eyJ1Ijoi" + chars(URLSAFE, 40, "mb") + "." + chars(URLSAFE, 22, "mb2"),
       "mapbox {s}"),
    _s("facebook_access_token", "facebook_token", "EAAC" + chars(ALNUM, 150, "fb"),
       "graph api token {s}"),
    _s("twitter_bearer_token", "twitter_bearer", "A" * 22 + chars(ALNUM, 80, "tw"),
       "twitter {s}"),
    _s("age_secret_key", "age_secret_key", "AGE-SECRET-KEY-1" + chars(BECH32, 58, "age"),
       "sops age key {s}"),
    # --- generic formats ---
    _s("jwt", "jwt", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + chars(URLSAFE, 60, "jwt1")
       + "." + chars(URLSAFE, 43, "jwt2"), "session cookie was {s} yesterday"),
    _s("rsa_private_key", "private_key", "-----BEGIN RSA PRIVATE KEY-----\n" + _PEM_BODY
       + "\n-----END RSA PRIVATE KEY-----", "deploy key:\n{s}\nend"),
    _s("openssh_private_key", "private_key", "-----BEGIN OPENSSH PRIVATE KEY-----\n"
       + _PEM_BODY + "\n-----END OPENSSH PRIVATE KEY-----", "{s}"),
    _s("pgp_private_key", "private_key", "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n"
       + _PEM_BODY + "\n-----END PGP PRIVATE KEY BLOCK-----", "gpg export:\n{s}"),
    _s("putty_private_key", "private_key", "PuTTY-User-Key-File-3: ssh-ed25519\n"
       "Encryption: none\nComment: deploy\nPublic-Lines: 2\n" + _PEM_BODY
       + "\nPrivate-Lines: 1\n" + chars(B64, 44, "ppk") + "\nPrivate-MAC: " + chars(HEX, 64, "mac"),
       "{s}"),
    _s("database_url_password", "url_password", chars(ALNUM, 18, "dburl"),
       "DATABASE_URL=postgres://app:{s}@db.internal:5432/app"),
    _s("redis_url_password", "url_password", chars(ALNUM, 16, "redis"),
       "cache at redis://:{s}@cache:6379/0"),
    _s("bearer_header", "bearer_token", chars(HEX, 40, "bearer"),
       "curl -H 'Authorization: Bearer {s}' https://api.acme.io"),
    _s("basic_auth_header", "basic_auth", _b64("admin:" + chars(ALNUM, 14, "basic")),
       "authorization: Basic {s}"),
    _s("env_password_assignment", "env_assignment", chars(ALNUM, 14, "envp") + "!",
       "DB_PASSWORD={s}"),
    _s("json_api_key", "env_assignment", chars(ALNUM, 24, "jsonk"), '{{"api_key": "{s}"}}'),
    _s("x_api_key_header", "env_assignment", chars(ALNUM, 32, "xapi"), "X-API-Key: {s}"),
    _s("kubeconfig_client_key", "private_key", _b64(chars(ALNUM, 60, "kube")),
       "users:\n- name: ci\n  user:\n    client-key-data: {s}"),
    _s("odbc_connection_password", "env_assignment", "Sup3r" + chars(ALNUM, 8, "odbc"),
       "Server=db;Database=app;User Id=sa;Password={s};"),
    _s("prose_api_key", "generic_api_key", chars(HEX, 32, "prose"),
       "the api key is {s}"),
    # --- passwords in prose and on a command line ---
    _s("prose_password", "password", "hunter" + chars("0123456789", 3, "pp"),
       "my password is {s}, please don't tell"),
    _s("prose_password_for", "password", "Winter" + chars("0123456789", 4, "pf") + "!",
       "The password for the staging VPN is {s}"),
    _s("prose_password_quoted", "password", "correct horse battery " + chars(ALNUM, 6, "pq"),
       'the wifi password is "{s}"'),
    _s("mysql_command_line", "password", "S3cr" + chars(ALNUM, 8, "my") + "!",
       "mysql -h db.internal -u root -p{s} app"),
    _s("sshpass_command_line", "password", "tr0ub4dor&" + chars(ALNUM, 4, "ssh"),
       "sshpass -p '{s}' ssh deploy@10.0.0.5"),
    _s("password_flag", "command_line_secret", chars(ALNUM, 12, "flag"),
       "docker login registry.acme.io --username ci --password {s}"),
    _s("token_flag", "command_line_secret", chars(ALNUM, 30, "tflag"),
       "terraform login --auth-token {s}"),
    _s("curl_user_password", "password", "Pa55" + chars(ALNUM, 8, "curl"),
       "curl -u admin:{s} https://jenkins.internal/api/json"),
    _s("redis_cli_password", "password", chars(ALNUM, 16, "rcli"),
       "redis-cli -h cache -a {s} ping"),
    _s("openssl_passin", "password", "Exp0rt" + chars(ALNUM, 6, "ossl"),
       "openssl pkcs12 -in cert.p12 -passin pass:{s} -nodes"),
    _s("netrc_password", "password", "correcthorse" + chars("abcdefgh", 4, "netrc"),
       "machine api.heroku.com\n  login ops@acme.io\n  password {s}"),
)

BENIGN: tuple[str, ...] = (
    # identifiers and hashes
    "request id 123e4567-e89b-12d3-a456-426614174000 failed",
    "fixed in commit 3f9a8c2e1b7d4f6a9c0e2b4d6f8a1c3e5b7d9f0a (short sha 3f9a8c2)",
    "md5 d41d8cd98f00b204e9800998ecf8427e and sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709",
    "sha256sum: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  app.tar.gz",
    "image: postgres@sha256:" + chars(HEX, 64, "digest"),
    '"integrity": "sha512-' + chars(B64, 86, "npmlock") + '=="',
    'integrity sha1-' + chars(B64, 27, "yarn") + "=",
    'hash = "sha256:' + chars(HEX, 64, "poetry") + '"',
    'checksum = "' + chars(HEX, 64, "cargo") + '"',
    "github.com/pkg/errors v0.9.1 h1:" + chars(B64, 43, "gosum") + "=",
    "requests==2.31.0 --hash=sha256:" + chars(HEX, 64, "pip"),
    "twilio account AC" + chars(HEX, 32, "acsid") + " sends the SMS",
    "arn:aws:iam::123456789012:role/deploy in eu-west-1",
    "pod api-7d9f8c6b5-x2kqz restarted; node ip-10-0-3-17.ec2.internal",
    "mac 3c:22:fb:12:9a:0e, ipv6 2001:db8::8a2e:370:7334",
    "bcrypt hash $2b$12$" + chars(B64.replace("+", "."), 53, "bcrypt") + " in the users table",
    # base64 of ordinary text and public material
    "SGVsbG8sIFdvcmxkIQ== is 'Hello, World!' in base64",
    "VGhlIHF1aWNrIGJyb3duIGZveCBqdW1wcyBvdmVyIHRoZSBsYXp5IGRvZw==",
    '{"auth": "' + _b64("the quick brown fox") + '"}',
    '{"auth": "oauth2", "scheme": "bearer"}',
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + chars(B64, 43, "ed") + " dev@laptop",
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ" + chars(B64, 200, "rsa") + " ci@build",
    "-----BEGIN PUBLIC KEY-----\n" + _PEM_BODY + "\n-----END PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----\n" + _PEM_BODY + "\n-----END CERTIFICATE-----",
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhf"
    "DwAChwGA60e6kgAAAABJRU5ErkJggg==",
    "stripe publishable key pk_" + "live_" + chars(ALNUM, 24, "pk") + " is public by design",
    "mapbox public token pk.eyJ1IjoiYWNtZSIsImEiOiJjbGFiYzEyMyJ9." + chars(URLSAFE, 22, "pkmb"),
    "sentry dsn https://" + chars(HEX, 32, "dsn") + "@o123456.ingest.sentry.io/4504",
    # placeholders and documentation
    "set OPENAI_API_KEY=sk-... before running",
    "export ANTHROPIC_API_KEY=<your-key>",
    "GITHUB_TOKEN=ghp_" + "X" * 36,
    "the key looks like AKIA" + "X" * 16,
    "API_KEY=your-api-key-here",
    "TOKEN=changeme and PASSWORD=********",
    "PASSWORD=${DB_PASSWORD}\nTOKEN=<your-token-here>\nAPI_KEY=***",
    "Authorization: Bearer <token>",
    "Authorization: Bearer $TOKEN",
    "SendGrid keys start with SG. and Shopify tokens with shpat_",
    "DigitalOcean tokens look like dop_v1_... and Docker ones like dckr_pat_...",
    "our keys look like tm_xxxx; see tm_memory_postings_tenant_project_idx",
    "the table tm_consolidation_runs_scope_idx is big",
    # versions and numbers
    "upgraded to v1.2.3, then 1.0.0-rc.1+build.5; node v20.11.1, Python 3.11.7",
    "pgvector 0.6.2 on PostgreSQL 16.2; temporal 1.32.0",
    "phone 555-0199, order #A-99812, invoice 2024-000123",
    # code and shell
    "token = tokenizer.encode(text)",
    "password_hash = bcrypt.hashpw(password, salt)",
    "secret_key_base = Rails.application.credentials.secret_key_base",
    "def get_api_key(self) -> str:",
    "api_key = os.environ['API_KEY']",
    "token: Optional[str] = None",
    "export GITHUB_TOKEN=$(gh auth token)",
    "echo $PASS | docker login --password-stdin -u ci registry.acme.io",
    "mysql -u root -p app_db",
    "mkdir -p /var/lib/app && cp -p a b",
    "curl -u admin https://jenkins.internal/api/json",
    'curl -u "$USER:$PASS" https://jenkins.internal',
    'redis-cli -a "$REDIS_PASSWORD" ping',
    'sshpass -p "$SSH_PASS" ssh deploy@10.0.0.5',
    "psql --password $DB_PASSWORD and vault login --token <token>",
    "use the --token option or the --password flag",
    "openssl genrsa -aes256 -passout env:KEY_PASS 4096",
    "PWD=/home/dev/project and cd $OLDPWD",
    "SELECT * FROM users WHERE password_hash = :hash",
    "MAX_TOKENS=4096 TOKEN_TTL=3600 PASSWORD_MIN_LENGTH=12",
    "https://example.com/search?q=token&page=2&sig=abc",
    "clone git@github.com:acme/api.git or ssh://git@github.com:22/acme/api.git",
    "see https://github.com/acme/api/pull/1234 and https://example.com:8443/path?q=1&x=y",
    # prose
    "the password is hashed with bcrypt and stored in Vault",
    "the password is sha256-hashed then stored; the passphrase is rotated every 90 days",
    "passwords must be at least 12 characters; password reset emails expire after 24h",
    "the password for the admin panel is in 1Password",
    "the password is argon2id-hashed, the api key is rotated monthly",
    "Error: invalid token: expired",
    "Bearer tokens are validated by the gateway",
    "rotate the API key every 90 days and never commit secrets",
    "the token bucket rate limiter allows 50 requests per second",
    "xoxo from the team, see you on the key-value store migration",
    "AKIA is the prefix of AWS access key ids, ASIA of temporary ones",
    "🔥 deploy went fine 🚀 — ünïcödé text, 日本語のテキスト",
)
