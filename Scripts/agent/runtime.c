/* What Embedded Swift's standard library expects the platform to provide and glibc does not. */
#include <stdlib.h>

/* Double(String) parses through this. The agent never sets a locale, so strtod is the C locale's. */
const char *_swift_stdlib_strtod_clocale(const char *nptr, double *outResult) {
    char *end;
    *outResult = strtod(nptr, &end);
    return end;
}

/* The program's entry: Embedded Swift has no CommandLine, so argv goes to the agent from here
 * (Sources/AgentCore/AgentMain.swift). */
int cmalab_agent_main(int argc, char **argv);

int main(int argc, char **argv) {
    return cmalab_agent_main(argc, argv);
}
