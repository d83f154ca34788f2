"""Link options of Debian's system libraries, static under -c opt."""

# Parts of glibc: always the shared libraries.
_SHARED_ONLY = ["pthread", "rt", "dl", "m"]

def system_libs(libs):
    """`libs` (-lNAME each) as is, or under -c opt as NAME's static archive.

    The -dev packages ship libNAME.a beside libNAME.so; glibc's parts stay
    shared.
    """
    return select({
        "//third_party/system:opt": [
            l if l[2:] in _SHARED_ONLY else "-l:lib%s.a" % l[2:]
            for l in libs
        ],
        "//conditions:default": libs,
    })
