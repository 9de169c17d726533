/*-------------------------------------------------------------------------
 *
 * forward.h
 *	  The libpq functions taking a PGconn * that need nothing but the inner
 *	  connection: an X-macro list, expanded by forward.c.
 *
 *	  CM_FN(return type, name, (parameters), (arguments))
 *	  CM_FN_STATE(...), the same for a function that only reads or sets the
 *	  connection's state and never touches its socket
 *
 * In the arguments, INNER is the inner connection of the parameter conn;
 * OPTS is the same once there is one, and until then the connection that
 * answers from the application's options (cm_inner_or_opts()), for the
 * accessors that libpq answers from the options at once.  Functions
 * with their own behaviour live in connect.c (the connect family, reset,
 * finish) and conn.c (status, socket, error message, host/port, protocol
 * version, PQconninfo(), settings kept across attempts).  regress/t/061_libpq_cm_api.t checks that
 * together they cover every such function of the installed libpq-fe.h and
 * libpq-events.h.
 *
 *-------------------------------------------------------------------------
 */
CM_FN_STATE(PGcancel *, PQgetCancel, (PGconn *conn), (INNER))
CM_FN_STATE(int, PQrequestCancel, (PGconn *conn), (INNER))
CM_FN_STATE(char *, PQdb, (const PGconn *conn), (OPTS))
CM_FN_STATE(char *, PQuser, (const PGconn *conn), (OPTS))
CM_FN_STATE(char *, PQpass, (const PGconn *conn), (OPTS))
CM_FN_STATE(char *, PQtty, (const PGconn *conn), (OPTS))
CM_FN_STATE(char *, PQoptions, (const PGconn *conn), (OPTS))
CM_FN_STATE(PGTransactionStatusType, PQtransactionStatus, (const PGconn *conn), (INNER))
CM_FN_STATE(const char *, PQparameterStatus, (const PGconn *conn, const char *paramName), (INNER, paramName))
CM_FN_STATE(int, PQserverVersion, (const PGconn *conn), (INNER))
CM_FN_STATE(int, PQbackendPID, (const PGconn *conn), (INNER))
CM_FN_STATE(PGpipelineStatus, PQpipelineStatus, (const PGconn *conn), (INNER))
CM_FN_STATE(int, PQconnectionNeedsPassword, (const PGconn *conn), (INNER))
CM_FN_STATE(int, PQconnectionUsedPassword, (const PGconn *conn), (INNER))
CM_FN_STATE(int, PQclientEncoding, (const PGconn *conn), (INNER))
CM_FN(int, PQsetClientEncoding, (PGconn *conn, const char *encoding), (INNER, encoding))
CM_FN_STATE(int, PQsslInUse, (PGconn *conn), (INNER))
CM_FN_STATE(void *, PQsslStruct, (PGconn *conn, const char *struct_name), (INNER, struct_name))
CM_FN_STATE(const char *, PQsslAttribute, (PGconn *conn, const char *attribute_name), (INNER, attribute_name))
CM_FN_STATE(const char *const *, PQsslAttributeNames, (PGconn *conn), (INNER))
CM_FN_STATE(void *, PQgetssl, (PGconn *conn), (INNER))
CM_FN_STATE(int, PQgssEncInUse, (PGconn *conn), (INNER))
CM_FN_STATE(void *, PQgetgssctx, (PGconn *conn), (INNER))
CM_FN(PGresult *, PQexec, (PGconn *conn, const char *query), (INNER, query))
CM_FN(PGresult *, PQexecParams, (PGconn *conn, const char *command, int nParams, const Oid *paramTypes, const char *const *paramValues, const int *paramLengths, const int *paramFormats, int resultFormat), (INNER, command, nParams, paramTypes, paramValues, paramLengths, paramFormats, resultFormat))
CM_FN(PGresult *, PQprepare, (PGconn *conn, const char *stmtName, const char *query, int nParams, const Oid *paramTypes), (INNER, stmtName, query, nParams, paramTypes))
CM_FN(PGresult *, PQexecPrepared, (PGconn *conn, const char *stmtName, int nParams, const char *const *paramValues, const int *paramLengths, const int *paramFormats, int resultFormat), (INNER, stmtName, nParams, paramValues, paramLengths, paramFormats, resultFormat))
CM_FN(int, PQsendQuery, (PGconn *conn, const char *query), (INNER, query))
CM_FN(int, PQsendQueryParams, (PGconn *conn, const char *command, int nParams, const Oid *paramTypes, const char *const *paramValues, const int *paramLengths, const int *paramFormats, int resultFormat), (INNER, command, nParams, paramTypes, paramValues, paramLengths, paramFormats, resultFormat))
CM_FN(int, PQsendPrepare, (PGconn *conn, const char *stmtName, const char *query, int nParams, const Oid *paramTypes), (INNER, stmtName, query, nParams, paramTypes))
CM_FN(int, PQsendQueryPrepared, (PGconn *conn, const char *stmtName, int nParams, const char *const *paramValues, const int *paramLengths, const int *paramFormats, int resultFormat), (INNER, stmtName, nParams, paramValues, paramLengths, paramFormats, resultFormat))
CM_FN_STATE(int, PQsetSingleRowMode, (PGconn *conn), (INNER))
CM_FN(PGresult *, PQgetResult, (PGconn *conn), (INNER))
CM_FN(int, PQisBusy, (PGconn *conn), (INNER))
CM_FN(int, PQconsumeInput, (PGconn *conn), (INNER))
CM_FN(int, PQenterPipelineMode, (PGconn *conn), (INNER))
CM_FN(int, PQexitPipelineMode, (PGconn *conn), (INNER))
CM_FN(int, PQpipelineSync, (PGconn *conn), (INNER))
CM_FN(int, PQsendFlushRequest, (PGconn *conn), (INNER))
CM_FN(PGnotify *, PQnotifies, (PGconn *conn), (INNER))
CM_FN(int, PQputCopyData, (PGconn *conn, const char *buffer, int nbytes), (INNER, buffer, nbytes))
CM_FN(int, PQputCopyEnd, (PGconn *conn, const char *errormsg), (INNER, errormsg))
CM_FN(int, PQgetCopyData, (PGconn *conn, char **buffer, int async), (INNER, buffer, async))
CM_FN(int, PQgetline, (PGconn *conn, char *string, int length), (INNER, string, length))
CM_FN(int, PQputline, (PGconn *conn, const char *string), (INNER, string))
CM_FN(int, PQgetlineAsync, (PGconn *conn, char *buffer, int bufsize), (INNER, buffer, bufsize))
CM_FN(int, PQputnbytes, (PGconn *conn, const char *buffer, int nbytes), (INNER, buffer, nbytes))
CM_FN(int, PQendcopy, (PGconn *conn), (INNER))
CM_FN(int, PQflush, (PGconn *conn), (INNER))
CM_FN(PGresult *, PQfn, (PGconn *conn, int fnid, int *result_buf, int *result_len, int result_is_int, const PQArgBlock *fargs, int nargs), (INNER, fnid, result_buf, result_len, result_is_int, fargs, nargs))
CM_FN(PGresult *, PQdescribePrepared, (PGconn *conn, const char *stmt), (INNER, stmt))
CM_FN(PGresult *, PQdescribePortal, (PGconn *conn, const char *portal), (INNER, portal))
CM_FN(int, PQsendDescribePrepared, (PGconn *conn, const char *stmt), (INNER, stmt))
CM_FN(int, PQsendDescribePortal, (PGconn *conn, const char *portal), (INNER, portal))
CM_FN_STATE(PGresult *, PQmakeEmptyPGresult, (PGconn *conn, ExecStatusType status), (INNER, status))
CM_FN_STATE(size_t, PQescapeStringConn, (PGconn *conn, char *to, const char *from, size_t length, int *error), (INNER, to, from, length, error))
CM_FN_STATE(char *, PQescapeLiteral, (PGconn *conn, const char *str, size_t len), (INNER, str, len))
CM_FN_STATE(char *, PQescapeIdentifier, (PGconn *conn, const char *str, size_t len), (INNER, str, len))
CM_FN_STATE(unsigned char *, PQescapeByteaConn, (PGconn *conn, const unsigned char *from, size_t from_length, size_t *to_length), (INNER, from, from_length, to_length))
CM_FN(int, lo_open, (PGconn *conn, Oid lobjId, int mode), (INNER, lobjId, mode))
CM_FN(int, lo_close, (PGconn *conn, int fd), (INNER, fd))
CM_FN(int, lo_read, (PGconn *conn, int fd, char *buf, size_t len), (INNER, fd, buf, len))
CM_FN(int, lo_write, (PGconn *conn, int fd, const char *buf, size_t len), (INNER, fd, buf, len))
CM_FN(int, lo_lseek, (PGconn *conn, int fd, int offset, int whence), (INNER, fd, offset, whence))
CM_FN(pg_int64, lo_lseek64, (PGconn *conn, int fd, pg_int64 offset, int whence), (INNER, fd, offset, whence))
CM_FN(Oid, lo_creat, (PGconn *conn, int mode), (INNER, mode))
CM_FN(Oid, lo_create, (PGconn *conn, Oid lobjId), (INNER, lobjId))
CM_FN(int, lo_tell, (PGconn *conn, int fd), (INNER, fd))
CM_FN(pg_int64, lo_tell64, (PGconn *conn, int fd), (INNER, fd))
CM_FN(int, lo_truncate, (PGconn *conn, int fd, size_t len), (INNER, fd, len))
CM_FN(int, lo_truncate64, (PGconn *conn, int fd, pg_int64 len), (INNER, fd, len))
CM_FN(int, lo_unlink, (PGconn *conn, Oid lobjId), (INNER, lobjId))
CM_FN(Oid, lo_import, (PGconn *conn, const char *filename), (INNER, filename))
CM_FN(Oid, lo_import_with_oid, (PGconn *conn, const char *filename, Oid lobjId), (INNER, filename, lobjId))
CM_FN(int, lo_export, (PGconn *conn, Oid lobjId, const char *filename), (INNER, lobjId, filename))
CM_FN(char *, PQencryptPasswordConn, (PGconn *conn, const char *passwd, const char *user, const char *algorithm), (INNER, passwd, user, algorithm))
CM_FN_STATE(int, PQdefaultSSLKeyPassHook_OpenSSL, (char *buf, int size, PGconn *conn), (buf, size, INNER))
/* libpq 16 to 18 (pq_newer.h) */
CM_FN_STATE(int, PQconnectionUsedGSSAPI, (const PGconn *conn), (INNER))
CM_FN_STATE(PGcancelConn *, PQcancelCreate, (PGconn *conn), (INNER))
CM_FN_STATE(int, PQsetChunkedRowsMode, (PGconn *conn, int chunkSize), (INNER, chunkSize))
CM_FN(int, PQsendPipelineSync, (PGconn *conn), (INNER))
CM_FN(PGresult *, PQclosePrepared, (PGconn *conn, const char *stmt), (INNER, stmt))
CM_FN(PGresult *, PQclosePortal, (PGconn *conn, const char *portal), (INNER, portal))
CM_FN(int, PQsendClosePrepared, (PGconn *conn, const char *stmt), (INNER, stmt))
CM_FN(int, PQsendClosePortal, (PGconn *conn, const char *portal), (INNER, portal))
CM_FN(PGresult *, PQchangePassword, (PGconn *conn, const char *user, const char *passwd), (INNER, user, passwd))
CM_FN_STATE(char *, PQservice, (const PGconn *conn), (OPTS))
CM_FN_STATE(int, PQfullProtocolVersion, (const PGconn *conn), (INNER))
CM_FN_STATE(int, PQdefaultAuthDataHook, (PGauthData type, PGconn *conn, void *data), (type, INNER, data))
/* libpq-events.h */
CM_FN_STATE(int, PQregisterEventProc, (PGconn *conn, PGEventProc proc, const char *name, void *passThrough), (INNER, proc, name, passThrough))
CM_FN_STATE(int, PQsetInstanceData, (PGconn *conn, PGEventProc proc, void *data), (INNER, proc, data))
CM_FN_STATE(void *, PQinstanceData, (const PGconn *conn, PGEventProc proc), (INNER, proc))
CM_FN_STATE(int, PQfireResultCreateEvents, (PGconn *conn, PGresult *res), (INNER, res))
