# shellcheck shell=bash
# Sourced by kafka.sh and postgres.sh: a private CA of the local stack and a server certificate it
# signs, for 127.0.0.1 and localhost, made with openssl (P-256 keys; the CA for 10 years, the
# server's certificate for 825 days).

# tls_current CERT: whether CERT exists and stays valid for more than a day.
tls_current() {
    openssl x509 -checkend 86400 -noout -in "$1" >/dev/null 2>&1
}

# tls_make DIR CA_CERT CA_NAME NAME: the CA (its key DIR/ca.key, its certificate CA_CERT, called
# CA_NAME) and a server key and certificate DIR/NAME.key and DIR/NAME.pem signed by it; every
# file made mode 600. Prints openssl's output and returns non-zero when it fails.
tls_make() {
    local dir=$1 ca_cert=$2 ca_name=$3 name=$4 rc=0
    local ext=$dir/$name.ext
    if ! command -v openssl >/dev/null 2>&1; then # Debian's, as postgres.sh installs its server
        command -v apt-get >/dev/null 2>&1 && apt-get update -qq >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl >/dev/null ||
            {
                echo "openssl not found and could not be installed; install it (apt-get install openssl)"
                return 1
            }
    fi
    ( # each step only after the one before succeeded (errexit does not hold under `||`)
        umask 077
        printf '%s\n' 'basicConstraints=critical,CA:FALSE' \
            'keyUsage=critical,digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' \
            'subjectAltName=IP:127.0.0.1,DNS:localhost' >"$ext" &&
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc -days 3650 \
                -subj "/CN=$ca_name" -keyout "$dir/ca.key" -out "$ca_cert" \
                -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' &&
            openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc -subj "/CN=localhost" \
                -keyout "$dir/$name.key" -out "$dir/$name.csr" &&
            openssl x509 -req -in "$dir/$name.csr" -CA "$ca_cert" -CAkey "$dir/ca.key" \
                -CAcreateserial -days 825 -extfile "$ext" -out "$dir/$name.pem"
    ) 2>&1 || rc=$?
    rm -f -- "$dir/$name.csr" "$ext" "$dir/ca.srl"
    return "$rc"
}
