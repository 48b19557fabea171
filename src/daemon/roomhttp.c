#include "daemon/roomhttp.h"

#include "util/json.h"
#include "util/msgbuf.h"
#include "core/protocol.h"

#include <errno.h>

struct roomhttp_pending {
	roomhttp_done_fn done;
	void *data;
	bool cancelled, finished, in_call;
};

static void created(int status, const struct store_room *room, const char *token, const char *why,
		    void *data)
{
	struct roomhttp_pending *p = data;

	if (!p->cancelled) {
		if (status == 0)
			p->done(201, protocol_room_created(NULL, room->id, token, room->expires_at), p->data);
		else
			p->done(503, json_error_body(why), p->data);
	}
	p->finished = true;
	if (!p->in_call)
		g_free(p);
}

/* The body as an object, within the clients' JSON limits; NULL if not. */
static json_object *parse_body(const struct config *cfg, const char *body, size_t len)
{
	const struct protocol_limits lim = { cfg->max_json_depth, cfg->max_json_values };
	/* json-c counts the innermost value as a level of its own. */
	json_tokener *tok = json_tokener_new_ex((int)cfg->max_json_depth + 1);
	json_object *obj;

	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = protocol_parse_object(tok, &lim, body, len);
	json_tokener_free(tok);
	return obj;
}

struct roomhttp_pending *roomhttp_create(const struct roomhttp_env *env, const struct config *cfg,
					 const struct netaddr *from, const char *bearer,
					 const char *body, size_t len, roomhttp_done_fn done,
					 void *data)
{
	struct jwt_claims claims = { 0 };
	struct msg_create_room req;
	struct msg_error err;
	enum jwt_error jwt_why;
	const char *issuer = NULL, *why = NULL;
	json_object *obj = NULL;
	gint64 now = g_get_real_time() / G_USEC_PER_SEC;

	if (!bearer || auth_verify(env->auth, bearer, now, &claims, &jwt_why, &issuer) < 0) {
		done(401, json_error_body(bearer ? jwt_error_reason(jwt_why) : "Authentication required"),
		     data);
		return NULL;
	}
	g_autofree char *principal = auth_principal(issuer, &claims);
	jwt_claims_clear(&claims);
	if (len && !(obj = parse_body(cfg, body, len))) {
		done(400, json_error_body("the body must be a JSON object"), data);
		return NULL;
	}
	if (protocol_decode_create_room(obj, &req, &err) < 0) {
		json_object_put(obj);
		done(400, json_error_body(err.message), data);
		return NULL;
	}
	struct roomhttp_pending *p = g_new0(struct roomhttp_pending, 1);
	p->done = done;
	p->data = data;
	p->in_call = true;
	const struct roomsvc_request rq = { .spec = &req, .created_by = principal, .from = from };
	int rc = roomsvc_create(env->roomsvc, &rq, now, created, p, &why);
	p->in_call = false;
	json_object_put(obj);
	if (rc < 0) {
		done(rc == -EDQUOT ? 429 : 400, json_error_body(why), data);
		g_free(p);
		return NULL;
	}
	if (p->finished) {
		g_free(p);
		return NULL;
	}
	return p;
}

void roomhttp_cancel(struct roomhttp_pending *p)
{
	if (p)
		p->cancelled = true;
}
