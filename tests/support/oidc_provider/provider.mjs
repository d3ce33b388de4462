// A real OpenID Provider for sessionwatch's single sign-on tests: panva's oidc-provider
// (OpenID-certified; Back-Channel Logout 1.0, RP-Initiated Logout), on loopback only.
// tests/support/oidc.py starts it with PORT, ISSUER and CLIENT (one client's metadata,
// JSON, with its backchannel_logout_uri). Sign-in uses the provider's development
// interactions (any user name, any password); consent is granted without a page.
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = process.env.ISSUER;
const client = JSON.parse(process.env.CLIENT);

const provider = new Provider(issuer, {
  clients: [{
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...client,
  }],
  features: {
    devInteractions: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  pkce: { required: () => true },
  cookies: { keys: ['sessionwatch-tests-only-cookie-key'] },
  claims: { openid: ['sub'] },
  // The app under test listens on loopback, which the provider's SSRF guard refuses to
  // call (rightly, in production): the tests' provider drops that guard, nothing else.
  fetch(url, options) {
    const { dispatcher, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
  async findAccount(ctx, id) {
    return { accountId: id, async claims() { return { sub: id }; } };
  },
  // First-party test client: grant the requested openid scope without a consent page.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid');
    await grant.save();
    return grant;
  },
});

// Log each back-channel delivery, so a failing test shows what the provider saw.
provider.on('backchannel.success', (c, accountId, sid) => {
  console.log(`backchannel.success client=${c.clientId} sub=${accountId} sid=${sid}`);
});
provider.on('backchannel.error', (ctx, error, c, accountId, sid) => {
  console.log(`backchannel.error client=${c.clientId} sub=${accountId} sid=${sid}: ${error.message}`);
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
