export declare const DEFAULT_PREFIX: string;
export interface RelayCookie { name: string; value: string; set_cookie: string }
export interface LoginResult {
  session: string; user: string; rotated_from: string | null; evicted: string[];
  revoked: number; expires_at: number; cookie: RelayCookie; remember_cookie: RelayCookie; tab: string;
}
export interface LogoutResult {
  logged_out: boolean; session: string | null; cookie: RelayCookie; remember_cookie: RelayCookie;
}
export interface SessionInfo {
  id: string; user: string; browser: string; os: string; place: string;
  created: number; last_seen: number; expires_at: number; live_tabs: number;
}
export declare class SessionAPIError extends Error {
  status: number; code: string; body: Record<string, unknown>;
}
export declare class SessionAPI {
  constructor(baseUrl: string, apiKey: string, options?: { prefix?: string; timeout?: number });
  login(user: string, options?: { cookie?: string; userAgent?: string; clientIp?: string; revokeOthers?: boolean; remember?: boolean }): Promise<LoginResult>;
  completeLogin(pending: string, evict: string[], options?: { cookie?: string; userAgent?: string; clientIp?: string }): Promise<LoginResult>;
  reauthenticated(cookie: string): Promise<{ session: string; user: string }>;
  logout(cookie: string): Promise<LogoutResult>;
  revoke(options: { session?: string; user?: string; exceptSession?: string; reason?: string }): Promise<number>;
  sessions(user: string): Promise<SessionInfo[]>;
}
