// calltree.groovy FILE: print a Jenkinsfile's call tree as JSON, read from Groovy's own syntax
// tree (the parser of Groovy 2.4, the version Jenkins' Pipeline engine runs). A syntax error
// exits non-zero with the parser's message and line.
//
// Each call becomes {"call": name, "args": [...], "body": [calls of its closure]}; a literal is
// its value, a GString or an expression its source text, named arguments a map.
import groovy.json.JsonOutput
import org.codehaus.groovy.ast.builder.AstBuilder
import org.codehaus.groovy.ast.expr.*
import org.codehaus.groovy.ast.stmt.*
import org.codehaus.groovy.control.CompilePhase
import org.codehaus.groovy.control.MultipleCompilationErrorsException

def value(Expression e) {
    if (e instanceof ConstantExpression) return e.value
    if (e instanceof MapExpression) {
        return e.mapEntryExpressions.collectEntries { [(value(it.keyExpression)): value(it.valueExpression)] }
    }
    if (e instanceof ListExpression) return e.expressions.collect { value(it) }
    if (e instanceof ClosureExpression) return [closure: calls(e.code)]
    if (e instanceof MethodCallExpression) return call(e)
    return e.text
}

def call(MethodCallExpression m) {
    def args = []
    def body = []
    def list = m.arguments instanceof TupleExpression ? m.arguments.expressions : [m.arguments]
    list.each { a ->
        if (a instanceof ClosureExpression) body.addAll(calls(a.code))
        else if (a instanceof NamedArgumentListExpression) args << value(new MapExpression(a.mapEntryExpressions))
        else args << value(a)
    }
    [call: m.methodAsString, line: m.lineNumber, args: args, body: body]
}

def calls(Statement s) {
    def out = []
    if (s instanceof BlockStatement) s.statements.each { out.addAll(calls(it)) }
    else if (s instanceof ExpressionStatement) {
        def e = s.expression
        if (e instanceof MethodCallExpression) out << call(e)
        else out << [expression: e.text, line: e.lineNumber]
    }
    else out << [statement: s.class.simpleName, line: s.lineNumber]
    out
}

try {
    def nodes = new AstBuilder().buildFromString(CompilePhase.CONVERSION, true, new File(args[0]).text)
    println JsonOutput.toJson(calls(nodes[0]))
} catch (MultipleCompilationErrorsException err) {
    System.err.println(err.message)
    System.exit(2)
}
