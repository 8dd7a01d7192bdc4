// A real OpenID Connect provider (the oidc-provider package) for ../sso_test.go. It is told
// by the OIDC_PROVIDER environment variable (JSON) where to listen, which client to accept
// and which accounts exist:
//   {"port": 1234, "client": {"client_id", "client_secret", "redirect_uris": [...]},
//    "accounts": {"<subject>": {"preferred_username": "...", "name": "...", ...}}}
// Users sign in on the package's built-in login and consent pages (devInteractions) with the
// subject of an account in "accounts" as login name. It prints "listening" when ready.
import Provider from 'oidc-provider';

const conf = JSON.parse(process.env.OIDC_PROVIDER);
const issuer = `http://127.0.0.1:${conf.port}`;

const provider = new Provider(issuer, {
  clients: [{
    ...conf.client,
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  async findAccount(ctx, id) {
    const account = conf.accounts[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() { return { ...account, sub: id }; },
    };
  },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username', 'department', 'groups'],
    email: ['email', 'email_verified'],
  },
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
  cookies: { keys: ['lattice-e2e-oidc-provider-cookie-key'] },
});
provider.proxy = false;
provider.on('server_error', (ctx, err) => console.error('server_error', err));

provider.listen(conf.port, '127.0.0.1', () => console.log('listening'));
